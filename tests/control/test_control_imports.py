"""boto3 and botocore stay out of the agent service and out of `defender-agent --help`."""

from __future__ import annotations

import subprocess
import sys


def test_cli_and_control_commands_do_not_import_boto3() -> None:
    code = (
        "import sys, agent.cli, agent.commands.bootstrap, agent.commands.values, agent.commands.aws_args;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"
