"""`defender-agent run` with remote keys stored and the broker away: they apply before any connection (the
report interval in effect is the shadow's), and what a shadow may not set never runs, even from the file."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict

from devkit.broker import free_port
from devkit.certs import make_pki
from tests.delivery.conftest import config_text
from tests.procs import plain_env
from tests.remote.base import COLLECTORS, SHADOW

EXTRA = SHADOW + COLLECTORS


def status(config: Path) -> Dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "agent", "status", "--json", "--config", str(config)],
                          capture_output=True, text=True, env=plain_env(), timeout=60, check=True)
    return dict(json.loads(done.stdout))


def rounds(config: Path) -> int:
    c = status(config).get("collectors", {}).get("listening_ports", {})
    return int(c.get("ok", 0) + c.get("failed", 0) + c.get("no_data", 0))


def test_a_restart_with_the_broker_away_keeps_the_applied_config(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    mark = tmp_path / "pwned"
    evil = ["/bin/sh", "-c", f"touch {mark}"]
    (state / "remote-config.json").write_text(json.dumps({
        "version": 12, "applied_at": 1700000000.0, "refused": {},
        "applied": {"report": {"interval": "1s"}, "collectors": {"cmd": {"command": evil, "interval": "1s"}},
                    "violations": {"exec": evil}, "mqtt": {"endpoint": "evil.example.com"}},
        "sources": {"report.interval": {"version": 12, "applied_at": 1700000000.0}}}))
    config = tmp_path / "agent.yaml"
    config.write_text(config_text(pki, free_port(), state, interval=3600) + EXTRA)  # nothing listens there
    config.chmod(0o600)
    agent = subprocess.Popen([sys.executable, "-m", "agent", "run", "--config", str(config)], cwd=tmp_path,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=plain_env())
    try:
        for _ in range(240):  # two rounds: agent.yaml's 1h interval would give one; the remote 1s gives more
            if agent.poll() is not None or rounds(config) >= 2:
                break
            time.sleep(0.25)
        assert agent.poll() is None, "the agent runs with the broker away"
        assert rounds(config) >= 2, "the report interval in effect is the remote one"
    finally:
        agent.send_signal(signal.SIGTERM)
        _, stderr = agent.communicate(timeout=60)
    assert agent.returncode == 0, stderr
    assert not mark.exists(), "a program named by the stored keys never ran"
    assert "Remote config from shadow version 12 in effect: collectors.cmd.interval, report.interval" in stderr
    shown = status(config)["remote"]
    assert shown["version"] == 12 and shown["applied"] == {"report": {"interval": "1s"},
                                                           "collectors": {"cmd": {"interval": "1s"}}}
    text = subprocess.run([sys.executable, "-m", "agent", "status", "--config", str(config)], capture_output=True,
                          text=True, env=plain_env(), timeout=60, check=True).stdout
    assert "remote config: shadow version 12, in effect" in text
    assert '  report.interval: "1s" (shadow version 12, applied ' in text
