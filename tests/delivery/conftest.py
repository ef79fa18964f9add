"""Real parts for delivery tests: a throwaway PKI, mosquitto with mutual TLS, the responder, a TCP proxy."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

import pytest

from agent.config.load import parse_config
from agent.config.model import Config
from agent.events import Signal, SignalEvent
from agent.report.model import NetworkStats, Sample, SampleKind
from devkit.broker import Broker, find_mosquitto
from devkit.certs import Pki, make_pki
from devkit.emulator.responder import Responder, ResponderOptions
from devkit.proxy import Proxy
from devkit.rig import ledger, pending_ids, wait_until  # noqa: F401  (used by the delivery tests)

THING = "test-gw"
ROOT = Path(__file__).resolve().parents[2]
AGENT_MAIN = Path(__file__).with_name("agent_main.py")

CONFIG = """\
thing_name: {thing}
mqtt:
  endpoint: 127.0.0.1
  port: {port}
  protocol: {protocol}
  cert: {cert}
  key: {key}
  ca: {ca}
  connect_timeout: 5s
report:
  interval: {interval}s
  jitter: {jitter}s
  format: {fmt}
delivery:
  backlog: {backlog}
  reply_timeout: {reply_timeout}s
  retry_max_delay: {retry_max_delay}s
  max_attempts: {max_attempts}
{extra_delivery}state_dir: {state}
log_level: {log_level}
{extra}"""


def config_text(pki: Pki, port: int, state: Path, **overrides: Any) -> str:
    device = pki.client(THING)
    values: Dict[str, Any] = dict(
        thing=THING, port=port, protocol="mqtt5", cert=device.cert, key=device.key, ca=pki.ca, interval=1,
        jitter=0, fmt="json", backlog="newest", reply_timeout=2, retry_max_delay=4, max_attempts=5,
        state=state, log_level="info", extra="", extra_delivery="",
    )
    values.update(overrides)
    return CONFIG.format(**values)


def make_config(pki: Pki, port: int, state: Path, **overrides: Any) -> Config:
    return parse_config(config_text(pki, port, state, **overrides), "test.yaml")


requires_mosquitto = pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto is not installed")


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def broker(pki: Pki, tmp_path: Path) -> Iterator[Broker]:
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed")
    b = Broker(tmp_path / "broker", pki)
    b.start()
    yield b
    b.stop()


@pytest.fixture
def responder(pki: Pki, broker: Broker) -> Iterator[Responder]:
    pair = pki.client("defender-emulator")
    r = Responder(ResponderOptions("127.0.0.1", broker.port, str(pair.cert), str(pair.key), str(pki.ca),
                                   client_id=f"emulator-{os.getpid()}"))
    r.start()
    yield r
    r.stop()


@pytest.fixture
def proxy(broker: Broker) -> Iterator[Proxy]:
    p = Proxy(broker.port)
    yield p
    p.close()


class CountingSource:
    """A test-only sample source: network deltas of known size, so sums can be checked."""

    def __init__(self, per_round: int = 100) -> None:
        self.per_round = per_round
        self.rounds = 0

    def sample(self) -> Sequence[Sample]:
        self.rounds += 1
        n = self.per_round
        return [Sample("network_stats", NetworkStats(n, 2 * n, 1, 2), SampleKind.STANDARD)]

    def stats(self) -> Dict[str, Dict[str, Any]]:
        return {"counting": {"ok": self.rounds, "failed": 0, "no_data": 0, "last_duration": 0.0001,
                             "last_error": None}}

    def close(self) -> None:
        pass


class RunningService:
    """A Service in a thread of this process; ``stop()`` sends it a TERM event."""

    def __init__(self, config: Config, source: Any = None, **kwargs: Any) -> None:
        from agent.scheduler import Service

        self.source = source or CountingSource()
        self.service = Service(config, lambda cfg: self.source, logging.getLogger("agent.test"), **kwargs)
        self.result: List[int] = []
        self.thread = threading.Thread(target=lambda: self.result.append(self.service.run()), daemon=True)
        self.thread.start()

    def stop(self, timeout: float = 10.0) -> float:
        started = time.monotonic()
        self.service.events.put(SignalEvent(Signal.TERM))
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "service did not stop"
        return time.monotonic() - started


def start_agent(config_path: Path, log_path: Path, env: Optional[Dict[str, str]] = None,
                *args: str) -> subprocess.Popen[bytes]:
    """The real service in a subprocess (with the test-only counting collector registered)."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    log = open(log_path, "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen([sys.executable, str(AGENT_MAIN), "run", "--config", str(config_path), *args],
                            stdout=log, stderr=log, env=full_env, cwd=str(ROOT))


def stop_agent(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 10.0) -> float:
    started = time.monotonic()
    if proc.poll() is None:
        proc.send_signal(sig)
    proc.wait(timeout)
    return time.monotonic() - started
