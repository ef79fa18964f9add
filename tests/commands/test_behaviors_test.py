"""`defender-agent behaviors test`: the config's behaviors judged on one fresh sample of a real machine."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import Tuple

import pytest

from agent.commands.behaviors_test import run_notes
from tests.behaviors.helpers import behavior
from tests.procs import plain_env

ROOT = Path(__file__).resolve().parents[2]


def free_tcp_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def config(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "agent.yaml"
    path.write_text(f"""\
thing_name: gw-1
report: {{interval: 10s}}
state_dir: {tmp_path / 'state'}
sinks: [{{type: textfile, path: {tmp_path / 'a.prom'}}}]
collectors:
  - type: listening_ports
  - type: system
    metrics: [cpu_usage]
custom_metrics: {{cpu_usage: number}}
behaviors:
  - name: NoDebugPort
    metric: aws:listening-tcp-ports
    criteria: {{comparisonOperator: not-in-port-set, value: {{ports: [{port}]}}}}
  - name: CpuSane
    metric: cpu_usage
    criteria: {{comparisonOperator: less-than-equals, value: {{number: 100}}, consecutiveDatapointsToAlarm: 3}}
  - name: Traffic
    metric: aws:all-bytes-out
    criteria: {{comparisonOperator: less-than, value: {{count: 1000000}}, durationSeconds: 300}}
""")
    path.chmod(0o600)
    return path


def behaviors_test(path: Path) -> Tuple[int, str, str]:
    done = subprocess.run([sys.executable, "-m", "agent", "behaviors", "test", "--config", str(path),
                           "--baseline", "0"], capture_output=True, text=True, cwd=ROOT, env=plain_env(),
                          timeout=60, check=False)
    return done.returncode, done.stdout, done.stderr


def test_a_listening_socket_of_ours_is_violated_and_normal_once_closed(tmp_path: Path) -> None:
    port = free_tcp_port()
    path = config(tmp_path, port)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", port))
        listener.listen()
        code, out, err = behaviors_test(path)
    assert code == 1, out + err
    lines = {line.split()[0]: line for line in out.splitlines() if line and not line[0].isdigit()}
    assert "VIOLATED" in lines["NoDebugPort"] and str(port) in lines["NoDebugPort"]
    assert " normal " in lines["CpuSane"] and "alarms after 3 in a row" in lines["CpuSane"]
    assert "no data" in lines["Traffic"] and "300 s window" in lines["Traffic"]
    assert out.splitlines()[-1] == "3 behavior(s): 1 violated, one sample of thing 'gw-1'"
    code, out, err = behaviors_test(path)
    assert code == 0, out + err
    assert " normal " in next(line for line in out.splitlines() if line.startswith("NoDebugPort"))
    assert not (tmp_path / "state").exists() or not any((tmp_path / "state").iterdir()), "nothing is written"


def test_a_behavior_the_device_cannot_run_exits_78_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("thing_name: gw-1\nsinks: [{type: textfile, path: /tmp/x.prom}]\nbehaviors:\n"
                    "  - name: Fleet\n    metric: aws:all-bytes-out\n"
                    "    criteria: {comparisonOperator: less-than, statisticalThreshold: {statistic: p90}, "
                    "durationSeconds: 300}\n")
    path.chmod(0o600)
    code, _, err = behaviors_test(path)
    assert code == 78 and "Traceback" not in err
    assert "behaviors[0].criteria.statisticalThreshold" in err, err


@pytest.mark.parametrize("metric", ["aws:num-listening-tcp-ports", "aws:num-listening-udp-ports"])
def test_a_port_count_with_duration_is_judged_on_its_newest_datapoint_as_run_does(metric: str) -> None:
    """agent.behaviors.evaluate: durationSeconds sums only byte and packet deltas; a port count is judged as is."""
    notes = run_notes(behavior(metric, "less-than", {"count": 10}, duration=300))
    assert notes == ["durationSeconds 300: the agent judges the newest datapoint, as here; "
                     "it sums a window only for byte and packet counts"]
    assert not any("window;" in note or "judges a" in note for note in notes)


@pytest.mark.parametrize("metric", ["aws:all-bytes-in", "aws:all-bytes-out", "aws:all-packets-in",
                                    "aws:all-packets-out"])
def test_a_byte_or_packet_count_with_duration_is_summed_over_the_window(metric: str) -> None:
    notes = run_notes(behavior(metric, "less-than", {"count": 10}, duration=600, to_alarm=2, suppressAlerts=True))
    assert notes == ["the agent alarms after 2 in a row",
                     "the agent sums the deltas of a 600 s window; this is one report period", "suppressAlerts"]


def test_no_duration_no_window_note() -> None:
    assert run_notes(behavior("aws:num-established-tcp-connections", "less-than", {"count": 10})) == []


def test_the_command_prints_how_run_judges_a_port_count_window(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(f"thing_name: gw-1\nstate_dir: {tmp_path / 'state'}\n"
                    f"sinks: [{{type: textfile, path: {tmp_path / 'a.prom'}}}]\n"
                    "collectors: [{type: listening_ports}]\nbehaviors:\n"
                    "  - name: FewPorts\n    metric: aws:num-listening-tcp-ports\n"
                    "    criteria: {comparisonOperator: less-than, value: {count: 100000}, durationSeconds: 300}\n")
    path.chmod(0o600)
    code, out, err = behaviors_test(path)
    assert code == 0, out + err
    line = next(line for line in out.splitlines() if line.startswith("FewPorts"))
    assert " normal " in line and "the agent judges the newest datapoint, as here" in line, line
    assert "300 s window" not in line
