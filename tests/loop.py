"""The loop harness the loop tests share: a ``Service`` opened on a ``FakeClock`` and ``FakeLinks``.

Driven by ``run_once()`` with a bound on the number of turns, so a broken loop fails instead of
spinning; no broker, no sleeps.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from agent.config.load import parse_config
from agent.config.model import Config
from agent.notify import Notifier
from agent.scheduler import Service
from devkit.clock import FakeClock
from devkit.fake_link import FakeLink, FakeLinks
from tests.delivery.conftest import CONFIG, THING, CountingSource

__all__ = ["THING", "HorizonClock", "Loop", "RecordingNotifier", "make_config"]

DUMMY_TLS = dict(cert="/etc/defender-agent/device.pem", key="/etc/defender-agent/device.key",
                 ca="/etc/defender-agent/ca.pem")  # never read: the fake link needs no files


def make_config(state: Path, **overrides: Any) -> Config:
    """The delivery tests' config (loopback endpoint, so short intervals are allowed), without a PKI."""
    values: Dict[str, Any] = dict(thing=THING, port=8883, protocol="mqtt5", interval=300, jitter=0, fmt="json",
                                  backlog="newest", reply_timeout=2, retry_max_delay=8, max_attempts=5,
                                  state=state, log_level="info", extra="", extra_delivery="", **DUMMY_TLS)
    values.update(overrides)
    return parse_config(CONFIG.format(**values), str(state.parent / "agent.yaml"))


class RecordingNotifier(Notifier):
    """The notify protocol without a socket: every datagram the service would send, in order."""

    def __init__(self, env: Optional[dict] = None) -> None:
        super().__init__({"NOTIFY_SOCKET": "/run/test/notify", **(env or {})})
        self.sent: List[str] = []

    def send(self, message: str) -> bool:
        self.sent.append(message)
        return True


class HorizonClock(FakeClock):
    """A :class:`FakeClock` whose waits stop at ``horizon`` (when set): the time a test looks at the loop.

    The loop sleeps until its next deadline, which may be minutes away; ``Loop.run_for(60)`` must
    still end at 60 s, not at the next report. Waking at the horizon is a wake-up nothing scheduled,
    like an event: the loop's turn finds nothing due, as it would in a real run.
    """

    def __init__(self) -> None:
        super().__init__()
        self.horizon: Optional[float] = None

    def wait(self, events: Any, timeout: float) -> Optional[object]:
        if self.horizon is not None:
            timeout = max(0.0, min(timeout, self.horizon - self.now))
        return super().wait(events, timeout)


class Loop:
    """An opened Service on a fake clock and fake links; leave the ``with`` block to close it."""

    def __init__(self, config: Config, *, source: Any = None, reload_config: Optional[Callable[[], Config]] = None,
                 notifier: Optional[Notifier] = None, max_reports: Optional[int] = None,
                 links: Optional[FakeLinks] = None, **link_options: Any) -> None:
        self.clock = HorizonClock()
        self.links = links or FakeLinks(**link_options)
        self.source = source or CountingSource()
        self.notifier = notifier or RecordingNotifier()
        self.service = Service(config, lambda cfg: self.source, logging.getLogger("agent.test.loop"),
                               reload_config=reload_config, link_factory=self.links, notifier=self.notifier,
                               rng=random.Random(7), max_reports=max_reports, clock=self.clock)
        self.service.open()
        self.publish_times: List[float] = []  # clock time of every publish, in order

    def __enter__(self) -> Loop:
        return self

    def __exit__(self, *exc: object) -> None:
        self.service.close()

    @property
    def link(self) -> FakeLink:
        return self.links.last

    def turn(self) -> None:
        before = sum(len(link.published) for link in self.links.links)
        self.service.run_once()
        after = sum(len(link.published) for link in self.links.links)
        self.publish_times.extend([self.clock.now] * (after - before))

    def until(self, condition: Callable[[], object], turns: int = 200) -> None:
        for _ in range(turns):
            if condition():
                return
            self.turn()
        assert condition(), f"not reached within {turns} turns (clock at {self.clock.now})"

    def run_for(self, seconds: float, turns: int = 2000) -> None:
        """Turns until ``seconds`` of fake time passed (or the loop stops); no wait goes past that time."""
        end = self.clock.now + seconds
        self.clock.horizon = end
        try:
            self.until(lambda: self.clock.now >= end or self.service.stopping, turns)
        finally:
            self.clock.horizon = None

    def outcome(self, report_id: int) -> Optional[str]:
        return self.service.state.outbox.outcome_of(report_id)
