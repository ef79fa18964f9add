"""The console script as an operator runs it: real subprocesses, exit codes, messages, no tracebacks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest

from agent.cli import COMMANDS
from agent.collectors.builtin import default_registry
from agent.config.sample import render_example
from devkit.certs import Pki, make_pki

ROOT = Path(__file__).resolve().parents[2]
MINIMAL = """\
thing_name: gw-1
mqtt:
  endpoint: 127.0.0.1
  cert: {d}/cert.pem
  key: {d}/key.pem
  ca: {d}/ca.pem
state_dir: {d}/state
"""


def agent(*args: str, env: Optional[Dict[str, str]] = None, stdin: bytes = b"") -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-c", "from agent.cli import main; main()", *args],
        input=stdin.decode(),
        capture_output=True,
        text=True,
        env=full_env,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def config_dir(tmp_path: Path, pki: Pki) -> Path:
    device = pki.client("gw-1")
    shutil.copy(device.cert, tmp_path / "cert.pem")
    shutil.copy(device.key, tmp_path / "key.pem")
    shutil.copy(pki.ca, tmp_path / "ca.pem")
    (tmp_path / "key.pem").chmod(0o600)
    (tmp_path / "agent.yaml").write_text(MINIMAL.format(d=tmp_path))
    return tmp_path


def _help_commands(help_text: str) -> List[Tuple[str, str]]:
    """(name, summary) of each command argparse lists under COMMAND, in order, wrapped lines joined."""
    lines = help_text.splitlines()
    start = lines.index("  COMMAND") + 1
    entries: List[List[str]] = []
    for line in lines[start:]:
        if not line.startswith("    "):
            break  # the blank line before "options:"
        if line[4] != " ":  # "    name   summary" or "    long-name" with the summary below
            name, _, summary = line.strip().partition(" ")
            entries.append([name, summary.strip()])
        else:
            entries[-1][1] = f"{entries[-1][1]} {line.strip()}".strip()
    return [(name, summary) for name, summary in entries]


def test_help_lists_every_command_and_exit_codes() -> None:
    # wide enough that argparse never wraps a summary, so each one is compared character for character
    result = agent("--help", env={"COLUMNS": "1000"})
    assert result.returncode == 0, result.stderr
    assert _help_commands(result.stdout) == [(c.name, c.summary) for c in COMMANDS], (
        "every command of agent.cli.COMMANDS, in table order, with its whole summary"
    )
    assert "78 configuration error" in result.stdout


def test_check_valid_config(config_dir: Path) -> None:
    result = agent("check", "--config", str(config_dir / "agent.yaml"))
    assert result.returncode == 0, result.stderr
    assert "OK (thing 'gw-1'" in result.stdout


def test_check_uses_the_environment_variable(config_dir: Path) -> None:
    result = agent("check", env={"DEFENDER_AGENT_CONFIG": str(config_dir / "agent.yaml")})
    assert result.returncode == 0, result.stderr


def test_check_bad_config_exits_78_with_every_problem_and_no_traceback(config_dir: Path) -> None:
    path = config_dir / "agent.yaml"
    path.write_text(MINIMAL.format(d=config_dir) + "report:\n  interval: 5x\n  formt: json\n")
    result = agent("check", "--config", str(path))
    assert result.returncode == 78
    assert f"{path}:9: report.interval: expected a duration" in result.stderr
    assert f'{path}:10: report.formt: unknown key (did you mean "format"?)' in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_check_refuses_a_key_that_awscrt_cannot_use(config_dir: Path, pki: Pki) -> None:
    key = config_dir / "key.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")
    garbage = agent("check", "--config", str(config_dir / "agent.yaml"))
    assert garbage.returncode == 78
    assert "mqtt: cannot set up TLS from cert" in garbage.stderr and "bm90IGEga2V5" not in garbage.stderr
    shutil.copy(pki.client("someone-else").key, key)  # a real key, but not the certificate's
    key.chmod(0o600)
    other = agent("check", "--config", str(config_dir / "agent.yaml"))
    assert other.returncode == 78, other.stdout
    assert "the two must match" in other.stderr


def test_check_missing_key_file_exits_78(config_dir: Path) -> None:
    (config_dir / "key.pem").unlink()
    result = agent("check", "--config", str(config_dir / "agent.yaml"))
    assert result.returncode == 78
    assert f"mqtt.key: {config_dir}/key.pem: file not found" in result.stderr


def test_check_missing_config_file_exits_78(tmp_path: Path) -> None:
    result = agent("check", "--config", str(tmp_path / "nope.yaml"))
    assert result.returncode == 78
    assert f"{tmp_path}/nope.yaml: (top level): file not found" in result.stderr


def test_validate_exit_codes_and_paths(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"header": {"report_id": 1, "version": "1.0"}, "custom_metrics": {"cpu": [{"number": 1}]}}))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"header": {"report_id": 1, "version": "1.0"}, "custom_metrics": {"cpu": {"number": 1}}}))
    ok = agent("validate", str(good))
    assert ok.returncode == 0 and "good.json: valid (json, long keys" in ok.stdout
    failed = agent("validate", str(good), str(bad), str(tmp_path / "missing.json"))
    assert failed.returncode == 1
    assert "bad.json: INVALID (json, long keys, 1 violation(s))" in failed.stdout
    assert "custom_metrics.cpu: a custom value must be an array" in failed.stdout
    assert "missing.json: cannot read" in failed.stdout
    from_stdin = agent("validate", "-", stdin=good.read_bytes())
    assert from_stdin.returncode == 0


def test_validate_accepts_the_golden_cbor_files() -> None:
    files = sorted(str(p) for p in (ROOT / "tests" / "fixtures" / "report").glob("*/expected.*"))
    assert len(files) >= 10
    result = agent("validate", *files)
    assert result.returncode == 0, result.stdout


def test_sample_config_is_the_checked_in_example() -> None:
    result = agent("sample-config")
    assert result.returncode == 0
    assert result.stdout == (ROOT / "config" / "agent.example.yaml").read_text(), (
        "config/agent.example.yaml drifted from the schema: run `make docs`"
    )
    assert result.stdout == render_example(default_registry())


def test_example_config_is_valid() -> None:
    from agent.config.load import load_config

    config = load_config(str(ROOT / "config" / "agent.example.yaml"))
    assert config.thing_name == "gateway-01"


def test_check_builds_the_collectors_so_an_unsafe_exec_program_is_caught(config_dir: Path) -> None:
    program = config_dir / "peers.sh"
    program.write_text("#!/bin/sh\necho 10.0.0.1\n")
    program.chmod(0o777)  # world-writable: anyone could change what the agent runs
    path = config_dir / "agent.yaml"
    path.write_text(
        MINIMAL.format(d=config_dir)
        + f"collectors:\n  - type: exec\n    command: [{program}]\n    metric: peers\n    metric_type: ip-address-list\n"
        + "custom_metrics:\n  peers: ip-address-list\n"
    )
    result = agent("check", "--config", str(path))
    assert result.returncode == 78, result.stdout
    assert "collectors[0]" in result.stderr and str(program) in result.stderr
    program.chmod(0o755)
    assert agent("check", "--config", str(path)).returncode == 0
