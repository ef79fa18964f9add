"""`config --effective` and `check`: agent.yaml with the stored remote keys, and where each came from."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import List

import yaml

from devkit.certs import make_pki
from tests.delivery.conftest import config_text
from tests.procs import plain_env

SHADOW = "shadow:\n  name: fleet\n  remote_config: {on}\ncollectors:\n  - type: listening_ports\n"


def agent(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True,
                          env=plain_env(), timeout=60, check=False)


def setup(tmp_path: Path, on: str = "true") -> Path:
    pki = make_pki(tmp_path / "pki")
    state = tmp_path / "state"
    state.mkdir()
    (state / "remote-config.json").write_text(json.dumps({
        "version": 4, "applied_at": 1700000000.0, "refused": {"mqtt.endpoint": "moves the connection"},
        "applied": {"report": {"interval": "10m"}, "collectors": {"listening_ports": {"interval": "1h"}},
                    "mqtt": {"endpoint": "evil.example.com"}},
        "sources": {"report.interval": {"version": 4, "applied_at": 1700000000.0},
                    "collectors.listening_ports.interval": {"version": 3, "applied_at": 1690000000.0}}}))
    config = tmp_path / "agent.yaml"
    config.write_text(config_text(pki, 8883, state, interval=300) + SHADOW.format(on=on))
    config.chmod(0o600)
    return config


def comments(out: str) -> List[str]:
    return [line for line in out.splitlines() if line.startswith("#")]


def test_effective_prints_the_merged_config_and_each_remote_keys_source(tmp_path: Path) -> None:
    config = setup(tmp_path)
    done = agent("config", "--effective", "--config", str(config))
    assert done.returncode == 0, done.stderr
    merged = yaml.safe_load(done.stdout)
    assert merged["report"]["interval"] == "10m" and merged["collectors"][0]["interval"] == "1h"
    assert merged["mqtt"]["endpoint"] == "127.0.0.1", "a key a shadow may not set stays agent.yaml's"
    header = comments(done.stdout)
    assert header[0] == f"# Effective config: {config} with the remote keys below"
    assert any(line.startswith('#   report.interval: "10m" (from shadow version 4, applied ')
               and line.endswith("; agent.yaml: \"300s\")") for line in header), header
    assert any(line.startswith('#   collectors.listening_ports.interval: "1h" (from shadow version 3, ')
               and line.endswith("agent.yaml: unset)") for line in header), header
    assert "#   refused mqtt.endpoint: moves the connection" in header
    as_json = json.loads(agent("config", "--effective", "--json", "--config", str(config)).stdout)
    assert as_json["remote"]["report.interval"] == {"value": "10m", "agent_yaml": "300s", "version": 4,
                                                    "applied_at": 1700000000.0}


def test_check_shows_the_remote_keys_in_effect(tmp_path: Path) -> None:
    config = setup(tmp_path)
    done = agent("check", "--config", str(config))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[1].startswith("remote config (in effect; `defender-agent config --effective`")
    assert any(line.startswith('  report.interval: "10m" (from shadow version 4') for line in lines)


def test_remote_config_off_shows_agent_yaml_and_says_the_stored_keys_are_ignored(tmp_path: Path) -> None:
    config = setup(tmp_path, on="false")
    done = agent("config", "--effective", "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert yaml.safe_load(done.stdout)["report"]["interval"] == "300s"
    assert any("are ignored: shadow.remote_config is off" in line for line in comments(done.stdout))
    status = agent("status", "--config", str(config)).stdout
    assert "remote config: shadow version 4, stored but ignored: shadow.remote_config is off" in status
