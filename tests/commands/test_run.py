"""`defender-agent run` at start: a state_dir it cannot use is one line and exit 74, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from devkit.certs import make_pki
from tests.delivery.conftest import config_text
from tests.procs import plain_env


def test_an_unusable_state_dir_is_one_line_and_exit_74(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where state_dir's parent should be\n")
    config = tmp_path / "agent.yaml"
    config.write_text(config_text(pki, 1, blocker / "state"))
    done = subprocess.run([sys.executable, "-m", "agent", "run", "--config", str(config)], check=False,
                          capture_output=True, text=True, env=plain_env(), cwd=tmp_path, timeout=60)
    assert done.returncode == 74, done.stderr
    assert "Traceback" not in done.stderr
    [line] = [ln for ln in done.stderr.splitlines() if ln.startswith("defender-agent: ")]
    assert line.startswith(f"defender-agent: cannot open the outbox in {blocker / 'state'}: ")


def test_a_behavior_no_collector_feeds_is_one_journal_line_at_start(tmp_path: Path) -> None:
    """What `check` warns about, `run` says once at start (with file, line and YAML path), and runs on."""
    config = tmp_path / "agent.yaml"
    config.write_text(
        "thing_name: gw-run\n"
        f"state_dir: {tmp_path / 'state'}\n"
        "report: {interval: 1s, jitter: 0s}\n"
        f"sinks: [{{type: textfile, path: {tmp_path / 'out.prom'}}}]\n"
        "collectors: [{type: network_stats}]\n"
        "custom_metrics: {door_open: number}\n"
        "behaviors:\n"
        "  - name: DoorShut\n"
        "    metric: door_open\n"
        "    criteria: {comparisonOperator: less-than, value: {number: 1}}\n")
    config.chmod(0o600)
    done = subprocess.run([sys.executable, "-m", "agent", "run", "--config", str(config), "--reports", "1"],
                          check=False, capture_output=True, text=True, env=plain_env(), cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    [line] = [ln for ln in done.stderr.splitlines() if "never be judged" in ln]
    assert f"{config}:9: behaviors[0].metric: no collector in `collectors:` emits custom metric 'door_open'" in line
