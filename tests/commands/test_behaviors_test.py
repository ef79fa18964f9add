"""`defender-agent behaviors test`: the config's behaviors judged on one fresh sample of a real machine."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import Tuple

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
