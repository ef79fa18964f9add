"""`defender-agent check`: identities the service or the broker would refuse stop at load, exit 78, naming the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.procs import plain_env

CONFIG = """\
thing_name: {thing}
mqtt:
  endpoint: 127.0.0.1
  client_id: {client}
  cert: /nonexistent/c.pem
  key: /nonexistent/k.pem
  ca: /nonexistent/ca.pem
state_dir: {state}
"""


@pytest.mark.parametrize(
    ("thing", "client", "line"),
    [
        ("gw+1", "ok-id", "agent.yaml:1: thing_name: 'gw+1' must be 1 to 128 of A-Z a-z 0-9 : _ -"),
        ("'gw 1'", "ok-id", "agent.yaml:1: thing_name: 'gw 1' must be 1 to 128"),
        ("gw-1", "'gw/1'", "agent.yaml:4: mqtt.client_id: 'gw/1' must not contain + # /"),
    ],
)
def test_identities_the_service_refuses_exit_78(tmp_path: Path, thing: str, client: str, line: str) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text(CONFIG.format(thing=thing, client=client, state=tmp_path / "state"))
    done = subprocess.run([sys.executable, "-m", "agent", "check", "--config", str(config)], check=False, capture_output=True,
                          text=True, env=plain_env(), cwd=tmp_path, timeout=60)
    assert done.returncode == 78
    assert line in done.stderr.replace(str(config), "agent.yaml")
    assert "Traceback" not in done.stderr


def check(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "agent.yaml"
    config.write_text(text)
    config.chmod(0o600)
    done = subprocess.run([sys.executable, "-m", "agent", "check", "--config", "agent.yaml"], check=False,
                          capture_output=True, text=True, env=plain_env(), cwd=tmp_path, timeout=60)
    assert "Traceback" not in done.stderr
    return done


LOCAL = "thing_name: gw-1\nstate_dir: {state}\n"


def test_a_relative_textfile_path_exits_78_naming_the_key(tmp_path: Path) -> None:
    done = check(tmp_path, LOCAL.format(state=tmp_path / "state") + "sinks:\n  - {type: textfile, path: out.prom}\n")
    assert done.returncode == 78, done.stderr
    assert "  agent.yaml:4: sinks[0].path: 'out.prom' must be an absolute path\n" in done.stderr


BEHAVIORS = """\
custom_metrics: {cpu_usage: number, door_open: number}
behaviors:
  - name: Cpu
    metric: cpu_usage
    criteria: {comparisonOperator: less-than, value: {number: 90}}
  - name: Door
    metric: door_open
    criteria: {comparisonOperator: less-than, value: {number: 1}}
  - name: TcpPorts
    metric: aws:num-listening-tcp-ports
    criteria: {comparisonOperator: less-than, value: {count: 10}}
  - name: UdpPorts
    metric: aws:listening-udp-ports
    criteria: {comparisonOperator: in-port-set, value: {ports: [53]}}
"""


def test_a_behavior_no_collector_feeds_is_a_warning_with_file_line_and_path(tmp_path: Path) -> None:
    head = LOCAL.format(state=tmp_path / "state") + f"sinks: [{{type: textfile, path: {tmp_path / 'a.prom'}}}]\n"
    done = check(tmp_path, head + "collectors:\n  - {type: system, metrics: [cpu_usage]}\n"
                 "  - {type: listening_ports, protocols: [udp]}\n" + BEHAVIORS)
    assert done.returncode == 0, done.stderr
    never = 'so this behavior can never be judged (it would stay "no data")'
    assert done.stderr.splitlines() == [
        f"defender-agent: warning: agent.yaml:13: behaviors[1].metric: no collector in `collectors:` emits custom "
        f"metric 'door_open', {never}; add a collector that emits it, or remove the behavior",
        "defender-agent: warning: agent.yaml:16: behaviors[2].metric: aws:num-listening-tcp-ports is derived from "
        f"listening_tcp_ports, which no collector in `collectors:` emits, {never}; the listening_ports collector "
        "emits it by default",
    ]
    assert "4 behavior(s) (2 never judged, see the warnings)," in done.stdout
    door = "{type: exec, command: [/bin/echo, '0'], metric: door_open, metric_type: number}"
    done = check(tmp_path, head + "collectors:\n  - {type: system, metrics: [cpu_usage]}\n"
                 f"  - {{type: listening_ports}}\n  - {door}\n" + BEHAVIORS)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert "4 behavior(s), sinks:" in done.stdout
