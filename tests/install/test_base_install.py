"""The installs a gateway gets: `pip install .` with no extras, and the Debian package on Debian's
libraries; then every command that needs no boto3.

Each command is the installed program, run from outside the checkout (cwd=/), so nothing from
the source tree or the developer's venv leaks in.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

from agent.cli import COMMANDS
from devkit.broker import Broker
from devkit.certs import Pki
from devkit.emulator.responder import Responder
from devkit.rig import ledger
from tests.delivery.conftest import THING, config_text
from tests.procs import imported_modules, plain_env, under

ROOT = Path(__file__).resolve().parents[2]
# What the daemon must never carry: the control plane's SDK, the emulator, the developer tools.
NOT_IN_RUN = ("boto3", "botocore", "devkit.emulator", "devkit", "agent.control")


def program(program: Path, *args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(program), *args], capture_output=True, text=True,
                          timeout=timeout, check=False, cwd="/", env=plain_env(**env))


def agent(venv: Path, *args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    return program(venv / "bin" / "defender-agent", *args, timeout=timeout, **env)


def test_the_base_install_has_no_extras(base_venv: Path) -> None:
    probe = subprocess.run(
        [str(base_venv / "bin" / "python"), "-c",
         "import importlib.util as u, agent, sys; "
         "print(agent.__file__); print([m for m in ('boto3', 'botocore', 'pytest') if u.find_spec(m)])"],
        capture_output=True, text=True, timeout=60, check=True, cwd="/")
    where, found = probe.stdout.splitlines()
    assert where.startswith(str(base_venv)), f"agent imported from {where}, not the installed copy"
    assert found == "[]", f"the base install must not hold {found}"


def test_the_base_install_ships_no_developer_tools(base_venv: Path) -> None:
    """`pip install .` installs what a gateway runs: no devkit, emulator, devtools, demo or fake link."""
    names = ("agent.cli", "devkit", "devkit.emulator", "agent.emulator", "agent.devtools", "agent.mqtt.fake",
             "agent.commands.demo", "agent.commands.emulator")
    probe = subprocess.run(
        [str(base_venv / "bin" / "python"), "-c",
         "import importlib.util as u, sys\n"
         "def found(name):\n"
         "    try:\n"
         "        return u.find_spec(name) is not None\n"
         "    except ModuleNotFoundError:\n"
         "        return False\n"
         "print(' '.join(n for n in sys.argv[1:] if found(n)))", *names],
        capture_output=True, text=True, timeout=60, check=False, cwd="/", env=plain_env())
    assert probe.returncode == 0 and probe.stdout.split() == ["agent.cli"], probe.stdout + probe.stderr
    site = next((base_venv / "lib").glob("python3*/site-packages"))
    shipped = [str(p.relative_to(site)) for p in site.rglob("*")
               if p.parts[len(site.parts)].startswith(("agent", "devkit", "defender_agent"))]
    assert shipped and [p for p in shipped if re.search(r"devkit|emulator|devtools|fake|demo", p)] == []
    metadata = next(site.glob("defender_agent-*.dist-info"))
    fields = (metadata / "METADATA").read_text()
    assert "License-Expression: Apache-2.0" in fields, fields[:2000]
    assert (metadata / "licenses" / "LICENSE").read_text() == (ROOT / "LICENSE").read_text()


def test_help_version_and_sample_config(base_venv: Path) -> None:
    result = agent(base_venv, "--help")
    assert result.returncode == 0, result.stderr
    # exactly the gateway's commands: the lines of the COMMAND list start with 4 spaces and its name
    listed = re.findall(r"^    (\S+)", result.stdout, re.MULTILINE)
    assert listed == [command.name for command in COMMANDS], listed
    assert "demo" not in listed and "emulator" not in listed
    for gone in ("demo", "emulator"):
        refused = agent(base_venv, gone)
        assert refused.returncode == 2 and "invalid choice" in refused.stderr, refused.stderr
    version = agent(base_venv, "--version")
    assert version.returncode == 0 and version.stdout.startswith("defender-agent "), version.stderr
    sample = agent(base_venv, "sample-config")
    assert sample.returncode == 0, sample.stderr
    assert sample.stdout == (ROOT / "config" / "agent.example.yaml").read_text()


@pytest.mark.parametrize("command", [
    ["bootstrap", "--config", "/nonexistent.yaml"],
    ["values", "--metric", "cpu_usage", "--thing", "gw"],
])
def test_boto3_commands_name_the_extra_in_one_line(base_venv: Path, command: List[str]) -> None:
    result = agent(base_venv, *command)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert f"`defender-agent {command[0]}` needs boto3" in lines[0]
    assert "pip install 'defender-agent[bootstrap]'" in lines[0]
    # ... and its --help still works
    assert agent(base_venv, command[0], "--help").returncode == 0


@pytest.mark.broker
@pytest.mark.parametrize("protocol", ["mqtt5", "mqtt311"])
def test_check_once_run_and_status_on_each_install(
    installed: Path, protocol: str, pki: Pki, broker: Broker, responder: Responder, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    config = tmp_path / "agent.yaml"
    config.write_text(config_text(pki, broker.port, state, reply_timeout=5, protocol=protocol) + (
        "collectors:\n  - type: listening_ports\n  - type: tcp_connections\n  - type: network_stats\n"
        "  - type: system\n    metrics: [cpu_usage, load_average]\n"
        "custom_metrics:\n  cpu_usage: {type: number}\n  load_average: {type: number-list}\n"))
    config.chmod(0o600)

    check = program(installed, "check", "--config", str(config))
    assert check.returncode == 0, check.stderr
    assert f"OK (thing '{THING}'" in check.stdout

    report = tmp_path / "report.json"
    once = program(installed, "once", "--config", str(config), "--output", str(report), "--baseline", "0.2")
    assert once.returncode == 0, once.stderr
    valid = program(installed, "validate", str(report))
    assert valid.returncode == 0 and "valid (json, long keys" in valid.stdout, valid.stdout

    run = program(installed, "run", "--config", str(config), "--reports", "2", PYTHONPROFILEIMPORTTIME="1")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    outcomes = ledger(state)
    assert sorted(outcomes.values()) == ["accepted", "accepted"], outcomes
    loaded = imported_modules(run.stderr)
    assert ("awscrt.mqtt5" if protocol == "mqtt5" else "awscrt.mqtt") in loaded, "the import log was not captured"
    assert under(loaded, *NOT_IN_RUN) == []

    status = program(installed, "status", "--config", str(config), "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["outcomes"]["accepted"] == 2, status.stdout


@pytest.mark.broker
def test_run_never_loads_boto3_or_dev_tools_even_where_installed(
    pki: Pki, broker: Broker, responder: Responder, tmp_path: Path
) -> None:
    """The developer's venv has boto3 and the dev tools; the daemon still must not load them."""
    assert importlib.util.find_spec("boto3") is not None, "this test needs a venv that has boto3"
    state = tmp_path / "state"
    config = tmp_path / "agent.yaml"
    config.write_text(config_text(pki, broker.port, state, reply_timeout=5))
    config.chmod(0o600)
    dev_venv = Path(sys.executable).parent.parent
    run = agent(dev_venv, "run", "--config", str(config), "--reports", "1", PYTHONPROFILEIMPORTTIME="1")
    assert run.returncode == 0, run.stderr[-3000:]
    assert list(ledger(state).values()) == ["accepted"]
    loaded = imported_modules(run.stderr)
    assert "agent.scheduler" in loaded and "awscrt.mqtt5" in loaded
    assert under(loaded, *NOT_IN_RUN) == []


@pytest.mark.broker
def test_sinks_and_behaviors_on_each_install(installed: Path, pki: Pki, broker: Broker, responder: Responder,
                                             tmp_path: Path) -> None:
    """The three sinks and an on-device behavior from the installed program on each library set."""
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        state, prom = tmp_path / "state", tmp_path / "textfile" / "agent.prom"
        prom.parent.mkdir()
        config = tmp_path / "agent.yaml"
        config.write_text(config_text(pki, broker.port, state, reply_timeout=5) + (
            "collectors:\n  - type: listening_ports\n"
            f"sinks:\n  - type: defender\n  - {{type: topic, topic: 'dt/{{thing_name}}/metrics'}}\n"
            f"  - {{type: textfile, path: '{prom}'}}\n"
            "behaviors:\n  - name: NoDebugPort\n    metric: aws:listening-tcp-ports\n"
            f"    criteria: {{comparisonOperator: not-in-port-set, value: {{ports: [{port}]}}}}\n"
            "violations: {topic: 'dt/{thing_name}/violations'}\n"))
        config.chmod(0o600)
        run = program(installed, "run", "--config", str(config), "--reports", "2")
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr[-3000:]
    assert "Behavior 'NoDebugPort' in alarm" in run.stderr
    assert f'defender_agent_aws_listening_tcp_ports{{port="{port}"}} 1' in prom.read_text()
    status = json.loads(program(installed, "status", "--config", str(config), "--json").stdout)
    sinks = {s["name"]: s for s in status["sinks"]}
    assert sinks["defender"]["delivered"] == 2 and sinks["topic"]["delivered"] == 2, sinks
    assert sinks["textfile"]["delivered"] == 2
    assert status["violations"]["counts"]["NoDebugPort"]["in-alarm"] == 1
    assert status["violations"]["events"]["delivered"] == 1
    local = tmp_path / "local.yaml"
    local.write_text(f"thing_name: {THING}\nstate_dir: {tmp_path / 'local'}\nsinks: [{{type: textfile, path: '{prom}'}}]\n"
                     "custom_metrics: {cpu_usage: number}\n")
    local.chmod(0o600)
    boot = program(installed, "bootstrap", "--config", str(local))  # no boto3 on the base install: not needed
    assert boot.returncode == 0 and "no defender sink" in boot.stdout, boot.stdout + boot.stderr
