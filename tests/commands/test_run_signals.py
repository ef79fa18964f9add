"""`defender-agent run` handles SIGTERM and SIGHUP at once, although its loop sleeps until the next deadline.

The loop has no periodic wake-up (agent/scheduler.py): between reports it sleeps in
``SimpleQueue.get(timeout=...)`` until the next report, resend or watchdog ping. A signal
interrupts that wait, its handler puts an event on the queue, and the loop handles it then.
Each case is the real command in a process of its own, idle between two reports 300 s apart,
against the project's broker and responder; the bounds on the waits are generous (5 s), where
a loop that only looked at its queue at the next deadline would take 300 s.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from devkit.broker import Broker
from devkit.certs import Pki
from devkit.emulator.responder import Responder
from devkit.rig import accepted_count
from tests.delivery.conftest import broker, config_text, pki, responder  # noqa: F401  (shared fixtures)
from tests.procs import plain_env

pytestmark = pytest.mark.broker

BOUND = 5.0  # seconds: "at once", with room for a loaded machine; the next deadline is 300 s away
COLLECTORS = "collectors:\n  - type: network_stats\n"


def wait_for(predicate: Callable[[], object], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


class Agent:
    """`python -m agent run` on ``config``, its stderr in ``log``."""

    def __init__(self, config: Path, log: Path) -> None:
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "agent", "run", "--config", str(config)],
                                         stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                                         env=plain_env(PYTHONUNBUFFERED="1"), cwd=config.parent)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def signal_and_wait(self, sig: int, condition: Callable[[], object]) -> float:
        """Send ``sig``; seconds until ``condition`` holds (at most :data:`BOUND`, else the test fails)."""
        started = time.monotonic()
        self.proc.send_signal(sig)
        assert wait_for(condition, BOUND), f"SIG{signal.Signals(sig).name[3:]} not handled within {BOUND} s:\n" + (
            self.text()[-3000:])
        return time.monotonic() - started

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def idle_agent(pki: Pki, broker: Broker, responder: Responder, tmp_path: Path) -> Iterator[Agent]:  # noqa: F811
    """An agent whose first report was accepted, now asleep until its next report (300 s away)."""
    state = tmp_path / "state"
    config = tmp_path / "agent.yaml"
    config.write_text(config_text(pki, broker.port, state, interval=300) + COLLECTORS)
    config.chmod(0o600)
    agent = Agent(config, tmp_path / "agent.log")
    try:
        assert wait_for(lambda: accepted_count(state) >= 1 or agent.proc.poll() is not None, 60), agent.text()
        assert agent.proc.poll() is None, agent.text()[-3000:]
        time.sleep(1.0)  # the reply's turn is over: the loop sleeps until the next report
        yield agent
    finally:
        agent.kill()


def test_sigterm_stops_an_idle_run_at_once(idle_agent: Agent) -> None:
    idle_agent.signal_and_wait(signal.SIGTERM, lambda: idle_agent.proc.poll() is not None)
    assert idle_agent.proc.returncode == 0, idle_agent.text()[-3000:]
    text = idle_agent.text()
    assert "Received SIGTERM" in text and "Stopped (0 report(s) still pending" in text
    assert "Traceback" not in text


def test_sighup_reloads_an_idle_run_at_once_and_sigterm_still_stops_it(idle_agent: Agent, tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text(config.read_text().replace("interval: 300s", "interval: 600s"))
    idle_agent.signal_and_wait(signal.SIGHUP, lambda: "Reloaded configuration from" in idle_agent.text())
    assert f"Reloaded configuration from {config} (changed: report)" in idle_agent.text()
    assert idle_agent.proc.poll() is None, "a reload does not stop the agent"
    idle_agent.signal_and_wait(signal.SIGTERM, lambda: idle_agent.proc.poll() is not None)
    assert idle_agent.proc.returncode == 0 and "Traceback" not in idle_agent.text(), idle_agent.text()[-3000:]
