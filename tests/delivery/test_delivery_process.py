"""`defender-agent run` as a real process: signals, reload, systemd notify, kill -9 and restart."""

from __future__ import annotations

import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import List

import pytest

from agent.outbox.ids import read_last_id
from devkit.broker import Broker
from devkit.certs import Pki
from devkit.emulator.responder import Responder
from tests.delivery.conftest import (
    ROOT,
    config_text,
    ledger,
    pending_ids,
    start_agent,
    stop_agent,
    wait_until,
)

pytestmark = [pytest.mark.broker, pytest.mark.timeout(240)]
COUNTER = "collectors:\n  - type: test_counter\n"


def accepted(state: Path) -> int:
    return sum(1 for o in ledger(state).values() if o == "accepted")


def test_sigterm_stops_quickly_and_sighup_reloads(pki: Pki, broker: Broker, responder: Responder,
                                                  tmp_path: Path) -> None:
    state, cfg, log = tmp_path / "state", tmp_path / "agent.yaml", tmp_path / "agent.log"
    cfg.write_text(config_text(pki, broker.port, state, extra=COUNTER))
    proc = start_agent(cfg, log)
    try:
        assert wait_until(lambda: accepted(state) >= 1, 20), log.read_text()
        cfg.write_text(config_text(pki, broker.port, state, interval=2, extra=COUNTER))
        proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: "Reloaded configuration" in log.read_text(), 10), log.read_text()
        cfg.write_text("thing_name: [this is not valid\n")
        proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: "Reload refused" in log.read_text(), 10), log.read_text()
        before = accepted(state)
        assert wait_until(lambda: accepted(state) > before, 10), "the old config must keep running"
        assert proc.poll() is None
    finally:
        took = stop_agent(proc)
    assert proc.returncode == 0 and took < 5.0, log.read_text()
    assert "Traceback" not in log.read_text()


def test_ready_and_watchdog_on_notify_socket(pki: Pki, broker: Broker, responder: Responder,
                                             tmp_path: Path) -> None:
    state, cfg, log = tmp_path / "state", tmp_path / "agent.yaml", tmp_path / "agent.log"
    cfg.write_text(config_text(pki, broker.port, state, interval=60))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    sock.settimeout(5)
    proc = start_agent(cfg, log, {"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "1000000"})
    messages: List[str] = []
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and sum(m == "WATCHDOG=1" for m in messages) < 3:
            messages.append(sock.recv(4096).decode())
    finally:
        stop_agent(proc)
        sock.close()
    assert messages[0].startswith("READY=1"), messages
    assert sum(m == "WATCHDOG=1" for m in messages) >= 3
    assert any(m.startswith("STATUS=") or "\nSTATUS=" in m for m in messages)


def test_no_notify_socket_means_silence(tmp_path: Path) -> None:
    from agent.notify import Notifier

    assert Notifier({}).watchdog_interval is None


def test_audit_failure_exits_78(pki: Pki, tmp_path: Path) -> None:
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(config_text(pki, 8883, tmp_path / "state").replace(str(pki.ca), str(tmp_path / "missing.pem")))
    result = subprocess.run([sys.executable, "-m", "agent", "run", "--config", str(cfg)], capture_output=True,
                            text=True, timeout=30, cwd=str(ROOT), check=False)
    assert result.returncode == 78 and "mqtt.ca" in result.stderr


def test_twenty_kill9_restarts_account_for_every_id(pki: Pki, broker: Broker, responder: Responder,
                                                    tmp_path: Path) -> None:
    rng = random.Random(11)
    state, cfg, log = tmp_path / "state", tmp_path / "agent.yaml", tmp_path / "agent.log"
    cfg.write_text(config_text(pki, broker.port, state, extra=COUNTER, reply_timeout=1, retry_max_delay=1))
    last_ids: List[int] = []
    for _ in range(20):
        proc = start_agent(cfg, log)
        time.sleep(rng.uniform(0.3, 2.0))
        proc.kill()
        proc.wait(5)
        last_ids.append(read_last_id(state))
    assert last_ids == sorted(last_ids)
    proc = start_agent(cfg, log)  # a final clean run drains what is left
    try:
        assert wait_until(lambda: accepted(state) >= 3 and not pending_ids(state), 30), log.read_text()[-3000:]
    finally:
        stop_agent(proc)
    outcomes = ledger(state)
    received = {r.report_id for r in responder.snapshot()}
    assert responder.conflicts == [], "an id was sent with two different payloads"
    assert received <= set(outcomes) | set(pending_ids(state)), received - set(outcomes)
    arrivals = [r.report_id for r in responder.snapshot()]
    firsts = list(dict.fromkeys(arrivals))
    assert firsts == sorted(firsts), "ids must increase in the order the service first sees them"
    assert max(outcomes) <= read_last_id(state)
    assert "Traceback" not in log.read_text()
