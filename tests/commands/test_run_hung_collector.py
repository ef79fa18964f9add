"""`defender-agent run` keeps its loop going while a collector hangs, and stops at once on SIGTERM.

The real command in a process of its own, as systemd runs it: a notify socket of the test's own
(``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` of 2 s, so a ping is due every second), a textfile sink (no
broker needed), and one exec collector whose program hangs for 200 s with ``timeout: 200s``. A loop
that waited for its collectors would send no WATCHDOG=1 for 200 s (systemd aborts the agent after
WatchdogSec) and would not see SIGTERM until the program is killed. The program's process group
must not outlive the agent either: it runs in a session of its own, so nobody else would kill it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, List

import pytest

from tests.procs import plain_env

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
WATCH = 8.0  # seconds of the hang during which the pings are counted
MIN_PINGS = 3  # of about 8 (one per second); the old loop sent none
STOP_BOUND = 5.0  # seconds from SIGTERM to exit

CONFIG = """\
thing_name: gw-hung
report: {{interval: 300s, jitter: 0s}}
state_dir: {state}
custom_metrics:
  hung_value: {{type: number}}
collectors:
  - type: exec
    name: hung
    command: [{program}]
    metric: hung_value
    metric_type: number
    timeout: 200s
sinks:
  - {{type: textfile, path: '{prom}'}}
"""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie waiting for its reaper is dead


def wait_for(predicate, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    yield sock
    sock.close()


def drain(sock: socket.socket) -> List[str]:
    """The datagrams already queued on ``sock``."""
    out = []
    sock.setblocking(False)
    try:
        while True:
            out.append(sock.recv(4096).decode())
    except BlockingIOError:
        return out
    finally:
        sock.setblocking(True)


def receive_for(sock: socket.socket, seconds: float) -> List[str]:
    """The datagrams that arrive on ``sock`` within ``seconds``."""
    out = []
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        sock.settimeout(remaining)
        try:
            out.append(sock.recv(4096).decode())
        except socket.timeout:
            break
    return out


def test_a_hung_collector_neither_starves_the_watchdog_nor_delays_sigterm(
    tmp_path: Path, notify_socket: socket.socket
) -> None:
    pidfile = tmp_path / "pids"
    program = tmp_path / "hang.sh"
    program.write_text(f"#!/bin/sh\nsleep 200 & echo $! >> {pidfile}\necho $$ >> {pidfile}\nwait\n")
    program.chmod(0o755)
    (tmp_path / "textfile").mkdir()
    config = tmp_path / "agent.yaml"
    config.write_text(CONFIG.format(state=tmp_path / "state", program=program,
                                    prom=tmp_path / "textfile" / "agent.prom"))
    config.chmod(0o600)
    env = plain_env(PYTHONUNBUFFERED="1", NOTIFY_SOCKET=str(tmp_path / "notify.sock"), WATCHDOG_USEC="2000000")
    env.pop("WATCHDOG_PID", None)  # one of the test runner's own would name another process
    log = tmp_path / "agent.log"
    pids: List[int] = []
    with open(log, "wb") as out:
        agent = subprocess.Popen([sys.executable, "-m", "agent", "run", "--config", str(config)],
                                 stdout=out, stderr=out, stdin=subprocess.DEVNULL, env=env, cwd=ROOT)
    try:
        def hanging() -> bool:
            return agent.poll() is not None or (pidfile.exists() and len(pidfile.read_text().split()) == 2)

        assert wait_for(hanging, 30), "the exec collector did not start within 30 s:\n" + log.read_text()[-3000:]
        assert agent.poll() is None, log.read_text()[-3000:]
        pids = [int(p) for p in pidfile.read_text().split()]
        before = drain(notify_socket)
        assert any(m.startswith("READY=1") for m in before), before

        during = receive_for(notify_socket, WATCH)
        pings = sum(m == "WATCHDOG=1" for m in during)
        assert pings >= MIN_PINGS, f"{pings} WATCHDOG=1 in {WATCH:g} s while the collector hangs: {during}"
        assert all(alive(p) for p in pids), "the collector must still hang for this test to mean anything"

        started = time.monotonic()
        agent.send_signal(signal.SIGTERM)
        try:
            agent.wait(STOP_BOUND)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {STOP_BOUND:g} s after SIGTERM:\n" + log.read_text()[-3000:])
        took = time.monotonic() - started
        text = log.read_text()
        assert agent.returncode == 0, f"exit {agent.returncode} after {took:.1f} s:\n" + text[-3000:]
        assert "Received SIGTERM" in text and "Traceback" not in text, text[-3000:]
        assert wait_for(lambda: not any(alive(p) for p in pids), 2.0), (
            f"the collector's program outlived the agent: {[p for p in pids if alive(p)]}")
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait(10)
        for pid in pids:  # whatever the outcome, leave no 200 s sleeper behind
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
