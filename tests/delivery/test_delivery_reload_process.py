"""SIGHUP with a config that became invalid, under a real `defender-agent run`: the running configuration
stays, and one log line says why (file, YAML path, problem). Three ways to become invalid: the schema,
the file audit (a key others can read), and TLS files awscrt refuses to load."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path
from typing import List

import pytest

from devkit.broker import Broker
from devkit.certs import Pki
from devkit.emulator.responder import Responder
from tests.delivery.conftest import THING, config_text, ledger, start_agent, stop_agent, wait_until

pytestmark = [pytest.mark.broker, pytest.mark.timeout(240)]
COUNTER = "collectors:\n  - type: test_counter\n"


def accepted(state: Path) -> int:
    return sum(1 for o in ledger(state).values() if o == "accepted")


def refusals(log: Path) -> list:
    return [ln for ln in log.read_text().splitlines() if "Reload refused" in ln]


def test_invalid_config_on_sighup_keeps_the_old_one_and_says_why(pki: Pki, broker: Broker, responder: Responder,
                                                                 tmp_path: Path) -> None:
    state, cfg, log = tmp_path / "state", tmp_path / "agent.yaml", tmp_path / "agent.log"
    good = config_text(pki, broker.port, state, extra=COUNTER)
    cfg.write_text(good)
    device = pki.client(THING)
    readable_key = tmp_path / "readable.key"
    shutil.copy(device.key, readable_key)
    os.chmod(readable_key, 0o644)
    garbage_key = tmp_path / "garbage.key"
    garbage_key.write_text("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCnotakey\n"
                           "-----END PRIVATE KEY-----\n")
    os.chmod(garbage_key, 0o600)
    broken = [
        (good.replace("report:\n", "report:\n  intervall: 2s\n"),
         [f"{cfg}", "report.intervall", "did you mean"]),
        (good.replace(f"key: {device.key}", f"key: {readable_key}"),
         ["mqtt.key", f"{readable_key}: private key is readable or writable by its group and others (mode 0644)",
          "Fix: chmod 600"]),
        (good.replace(f"key: {device.key}", f"key: {garbage_key}"),
         ["mqtt: cannot set up TLS from cert", str(garbage_key)]),
    ]
    proc = start_agent(cfg, log)
    try:
        assert wait_until(lambda: accepted(state) >= 1, 30), log.read_text()
        for number, (text, reasons) in enumerate(broken, start=1):
            cfg.write_text(text)
            proc.send_signal(signal.SIGHUP)
            assert wait_until(lambda n=number: len(refusals(log)) >= n, 15), log.read_text()
            line = refusals(log)[number - 1]
            assert "keeping the running configuration" in line
            for reason in reasons:
                assert reason in line, f"{reason!r} not in {line!r}"
            before = accepted(state)
            assert wait_until(lambda b=before: accepted(state) > b, 15), "the old config must keep running"
            assert proc.poll() is None
        cfg.write_text(good)
        proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: "Reloaded configuration" in log.read_text(), 15), log.read_text()
    finally:
        took = stop_agent(proc)
    text = log.read_text()
    assert proc.returncode == 0 and took < 5.0, text
    assert "Traceback" not in text
    assert len(refusals(log)) == len(broken), text
    assert "Reconnected" not in text and "Connection to" not in text, "a refused reload must not touch the link"


def unit_exec_reload(pid: int) -> list:
    """The shipped unit's ExecReload= command line, with systemd's $MAINPID substituted."""
    unit = Path(__file__).resolve().parents[2] / "systemd" / "defender-agent.service"
    [line] = [ln for ln in unit.read_text().splitlines() if ln.startswith("ExecReload=")]
    return [str(pid) if word == "$MAINPID" else word for word in line.split("=", 1)[1].split()]


def test_the_units_exec_reload_applies_a_changed_interval(pki: Pki, broker: Broker, responder: Responder,
                                                          tmp_path: Path) -> None:
    """`systemctl reload` runs ExecReload=; without one, systemd 252 answers "Job type reload is not applicable"."""
    state, cfg, log = tmp_path / "state", tmp_path / "agent.yaml", tmp_path / "agent.log"
    cfg.write_text(config_text(pki, broker.port, state, extra=COUNTER, interval=30))
    proc = start_agent(cfg, log)
    try:
        assert wait_until(lambda: accepted(state) >= 1, 30), log.read_text()
        cfg.write_text(config_text(pki, broker.port, state, extra=COUNTER, interval=1))
        subprocess.run(unit_exec_reload(proc.pid), check=True, timeout=10)
        assert wait_until(lambda: "Reloaded configuration" in log.read_text(), 15), log.read_text()
        assert wait_until(lambda: accepted(state) >= 3, 15), "the 1 s interval must apply after the reload"
    finally:
        stop_agent(proc)
    assert proc.returncode == 0, log.read_text()


def test_a_reload_whose_collectors_cannot_be_built_says_ready_and_reports_go_on(pki: Pki, broker: Broker,
                                                                                responder: Responder,
                                                                                tmp_path: Path) -> None:
    """Issue 23, defect 1, as systemd sees it: the config loads, but its exec program is one a start refuses
    (world-writable), so the new collectors cannot be built. Before, the agent went on with closed collectors
    under the new config and never said READY=1 after RELOADING=1."""
    state, cfg, log = tmp_path / "state", tmp_path / "agent.yaml", tmp_path / "agent.log"
    good = config_text(pki, broker.port, state, extra=COUNTER)
    cfg.write_text(good)
    program = tmp_path / "unsafe-metric"
    program.write_text("#!/bin/sh\necho 1\n")
    os.chmod(program, 0o777)
    unsafe = (f"  - type: exec\n    name: unsafe\n    command: [{program}]\n    metric: unsafe_value\n    metric_type: number\n"
              "custom_metrics:\n  unsafe_value: number\n")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    sock.settimeout(0.1)
    proc = start_agent(cfg, log, {"NOTIFY_SOCKET": str(tmp_path / "notify.sock")})
    sent: List[str] = []

    def heard(prefix: str, after: int = 0) -> bool:
        with contextlib.suppress(socket.timeout):
            for _ in range(100):  # what is queued now (STATUS= comes every round: never wait for silence)
                sent.append(sock.recv(4096).decode())
        return any(m.startswith(prefix) for m in sent[after:])

    try:
        assert wait_until(lambda: accepted(state) >= 1 and heard("READY=1"), 30), log.read_text()
        cfg.write_text(good.replace(COUNTER, COUNTER + unsafe))
        proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: len(refusals(log)) >= 1, 15), log.read_text()
        assert "collectors[1]: collector 'unsafe'" in refusals(log)[0] and "group- or world-writable" in refusals(log)[0]
        assert "keeping the running configuration" in refusals(log)[0]
        assert wait_until(lambda: heard("RELOADING=1"), 5), sent
        reloading = max(i for i, m in enumerate(sent) if m.startswith("RELOADING=1"))
        assert wait_until(lambda: heard("READY=1", reloading), 5), sent
        before = accepted(state)
        assert wait_until(lambda: accepted(state) >= before + 2, 15), "reports go on under the old collectors"
        assert proc.poll() is None
    finally:
        took = stop_agent(proc)
        sock.close()
    text = log.read_text()
    assert proc.returncode == 0 and took < 5.0, text
    assert "Traceback" not in text and "Sampling failed" not in text
