"""Only the command being run is imported, so a command's libraries never load for another.

Each case runs the real console entry point in a fresh interpreter with CPython's own
import log (PYTHONPROFILEIMPORTTIME=1) and reads which modules it loaded. That log has
every ``import`` statement but not the module that ``importlib.import_module`` itself
loads (docs/DEVELOPMENT.md, "Imports"), so the command's own module is absent and its imports are not.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Set

import pytest

from agent.cli import COMMANDS
from tests.procs import imported_modules, plain_env, under

SDK = ("boto3", "botocore")


def loaded_by(*args: str) -> Set[str]:
    result = subprocess.run([sys.executable, "-c", "from agent.cli import main; main()", *args],
                            capture_output=True, text=True, timeout=60, check=False,
                            env=plain_env(PYTHONPROFILEIMPORTTIME="1"))
    assert result.returncode == 0, result.stderr[-2000:]
    modules = imported_modules(result.stderr)
    assert "agent.cli" in modules, "the import log was not captured"
    return modules


def test_top_level_help_loads_no_command_and_no_library() -> None:
    modules = loaded_by("--help")
    assert under(modules, "agent.commands") == []
    assert under(modules, *SDK, "yaml", "cbor2", "psutil", "awscrt", "awsiot", "sqlite3") == []


@pytest.mark.parametrize("command", [c.name for c in COMMANDS])
def test_each_command_help_loads_only_its_own_module_and_no_aws_sdk(command: str) -> None:
    modules = loaded_by(command, "--help")
    own = next(f"agent.commands.{c.module}" for c in COMMANDS if c.name == command)
    others = [m for m in under(modules, "agent.commands")
              if m not in ("agent.commands", own, "agent.commands.common", "agent.commands.options", "agent.commands.aws_args",
                           "agent.commands.extras")]
    assert others == []
    assert under(modules, *SDK, "agent.control.bootstrap",
                 "devkit") == []
