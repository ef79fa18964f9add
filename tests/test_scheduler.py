"""The scheduler loop on a fake clock and a fake link (agent.clock, agent.delivery.fakelink): no broker, no sleeps.

``Loop`` is the harness the other loop tests (reload, heartbeat, disk full) use too: a
``Service`` opened on a ``FakeClock`` and ``FakeLinks``, driven by ``run_once()`` with
a bound on the number of turns, so a broken loop fails instead of spinning.
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import pytest

from agent.clock import FakeClock
from agent.commands.run import serve
from agent.config.load import parse_config
from agent.config.model import Config
from agent.delivery import events as ev
from agent.delivery.fakelink import AutoReply, FakeLink, FakeLinks
from agent.delivery.topics import reply_topic, report_topic
from agent.notify import Notifier
from agent.report.document import decode, to_long
from agent.scheduler import MAX_EVENTS_PER_TURN, Service
from tests.delivery.conftest import CONFIG, THING, CountingSource

DUMMY_TLS = dict(cert="/etc/defender-agent/device.pem", key="/etc/defender-agent/device.key",
                 ca="/etc/defender-agent/ca.pem")  # never read: the fake link needs no files


def make_config(state: Path, **overrides: Any) -> Config:
    """The delivery tests' config (loopback endpoint, so short intervals are allowed), without a PKI."""
    values: Dict[str, Any] = dict(thing=THING, port=8883, protocol="mqtt5", interval=300, jitter=0, fmt="json",
                                  backlog="newest", reply_timeout=2, retry_max_delay=8, drain_interval=0,
                                  state=state, log_level="info", extra="", **DUMMY_TLS)
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


class Loop:
    """An opened Service on a fake clock and fake links; leave the ``with`` block to close it."""

    def __init__(self, config: Config, *, source: Any = None, reload_config: Optional[Callable[[], Config]] = None,
                 notifier: Optional[Notifier] = None, max_reports: Optional[int] = None,
                 links: Optional[FakeLinks] = None, **link_options: Any) -> None:
        self.clock = FakeClock()
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
        """Turns until ``seconds`` of fake time passed (or the loop stops)."""
        end = self.clock.now + seconds
        self.until(lambda: self.clock.now >= end or self.service.stopping, turns)

    def outcome(self, report_id: int) -> Optional[str]:
        return self.service.outbox.outcome_of(report_id)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


def bytes_in(payload: bytes) -> int:
    doc, _ = decode(payload)
    return int(to_long(doc)["metrics"]["network_stats"]["bytes_in"])


def test_subscribes_then_publishes_and_an_accepted_reply_settles_the_report(state: Path,
                                                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agent.test.loop")
    with Loop(make_config(state)) as loop:
        loop.until(lambda: loop.link.published)
        link = loop.link
        assert link.subscribe_calls == [[reply_topic(THING, "json", "accepted"), reply_topic(THING, "json", "rejected")]]
        (first,) = link.published
        assert first.topic == report_topic(THING, "json") and first.report_id == loop.service.last_report_id
        link.accept(first.report_id)
        loop.until(lambda: loop.outcome(first.report_id) == "accepted")
        assert loop.service.outbox.pending() == [] and not loop.service.resend
        assert f"Report {first.report_id} accepted" in caplog.text
        loop.run_for(60)
        assert link.published_ids == [first.report_id], "an accepted report is not sent again"


def test_no_reply_resends_the_same_bytes_with_backoff_until_a_late_reply(state: Path) -> None:
    with Loop(make_config(state, reply_timeout=2, retry_max_delay=8)) as loop:
        loop.until(lambda: len(loop.link.published) >= 5, turns=100)
        sent = loop.link.published
        assert len({p.report_id for p in sent}) == 1 and len({p.payload for p in sent}) == 1
        gaps = [b - a for a, b in zip(loop.publish_times, loop.publish_times[1:])]
        assert gaps[0] == pytest.approx(2.0)  # reply_timeout
        assert 4.0 <= gaps[1] <= 4.8  # doubled, up to 20 % jitter
        assert gaps[2:] == [pytest.approx(8.0)] * 2  # capped at retry_max_delay
        rid = sent[0].report_id
        assert loop.service.outbox.get(rid).attempts == 5  # type: ignore[union-attr]
        loop.link.accept(rid)  # the reply to one of the resends arrives after the timeout
        loop.until(lambda: loop.outcome(rid) == "accepted")
        loop.run_for(60)
        assert len(loop.link.published) == 5


def test_a_reply_before_the_timeout_means_no_resend(state: Path) -> None:
    with Loop(make_config(state, reply_timeout=5)) as loop:
        loop.until(lambda: loop.link.published)
        rid = loop.link.published_ids[0]
        loop.run_for(4)
        loop.link.accept(rid)
        loop.run_for(60)
        assert loop.link.published_ids == [rid] and loop.outcome(rid) == "accepted"


def test_rejected_reply_in_cbor_is_kept_with_code_and_message_and_not_resent(state: Path,
                                                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agent.test.loop")
    with Loop(make_config(state, fmt="cbor")) as loop:
        loop.until(lambda: loop.link.published)
        assert loop.link.subscribe_calls[0] == [reply_topic(THING, "cbor", o) for o in ("accepted", "rejected")]
        rid = loop.link.published_ids[0]
        loop.link.reject(rid, code="InvalidPayload", message="Malformed metrics report")
        loop.until(lambda: loop.outcome(rid) == "rejected")
        (entry,) = loop.service.outbox.ledger(outcome="rejected")
        assert (entry.code, entry.message) == ("InvalidPayload", "Malformed metrics report")
        loop.run_for(60)
        assert loop.link.published_ids == [rid]
    assert f"Report {rid} rejected by the service: 'InvalidPayload': 'Malformed metrics report'" in caplog.text


def test_reconnect_resends_pending_reports_once_connected_again(state: Path) -> None:
    with Loop(make_config(state, reply_timeout=30, retry_max_delay=60)) as loop:
        loop.until(lambda: loop.link.published)
        rid = loop.link.published_ids[0]
        loop.run_for(5)
        loop.link.drop()  # a short outage, well inside the 30 s reply timeout
        loop.run_for(5)
        loop.link.connect()
        reconnected_at = loop.clock.now
        loop.until(lambda: len(loop.link.published) == 2, turns=5)
        assert loop.publish_times[-1] == reconnected_at, "replies sent while away are lost: resend at once"
        assert len(loop.link.subscribe_calls) == 2, "a clean session needs the reply topics again"
        loop.link.drop()  # a long outage: the resend falls due while offline (FakeLink refuses such publishes)
        loop.run_for(100)
        assert loop.link.published_ids == [rid, rid] and loop.service.outbox.get(rid) is not None
        loop.link.connect()
        loop.until(lambda: len(loop.link.published) == 3, turns=5)


def test_a_failed_publish_is_resent_and_only_a_puback_marks_delivered(state: Path) -> None:
    with Loop(make_config(state, reply_timeout=2), puback=False) as loop:
        loop.until(lambda: loop.link.published)
        rid = loop.link.published_ids[0]
        loop.link.complete(rid, ok=False, error="AWS_ERROR_MQTT_TIMEOUT")
        loop.turn()
        assert loop.service.outbox.get(rid).delivered is False  # type: ignore[union-attr]
        loop.until(lambda: len(loop.link.published) == 2)
        loop.link.complete(rid, ok=True)
        loop.turn()
        assert loop.service.outbox.get(rid).delivered is True  # type: ignore[union-attr]


def test_reports_wait_while_the_connection_hangs_and_newest_folds_them(state: Path) -> None:
    with Loop(make_config(state, interval=10), connects=False) as loop:
        loop.run_for(35)  # four rounds at 0, 10, 20, 30 s, no connection
        assert loop.source.rounds == 4 and loop.link.published == []
        loop.link.connect()
        loop.until(lambda: loop.link.published, turns=5)
        (only,) = loop.link.published
        assert bytes_in(only.payload) == 400, "the unsent reports' deltas are folded into the one sent"


@pytest.mark.timeout(20)
def test_stop_event_ends_run_and_closes_the_link(state: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agent.test.stop")
    links = FakeLinks()
    service = Service(make_config(state), lambda cfg: CountingSource(), logging.getLogger("agent.test.stop"),
                      link_factory=links, clock=FakeClock())
    service.events.put(ev.SignalEvent(ev.Signal.TERM))
    assert service.run() == 0
    assert links.last.stopped and "Received SIGTERM" in caplog.text and "Stopped (0 report(s)" in caplog.text
    with pytest.raises(Exception, match="closed"):
        service.outbox.pending()  # closed as well


@pytest.mark.timeout(20)
def test_serve_turns_a_real_sigterm_into_a_stop_event(state: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agent.test.serve")

    class SignallingSource(CountingSource):
        def sample(self) -> Any:
            if self.rounds == 0:
                os.kill(os.getpid(), signal.SIGTERM)  # arrives while serve()'s handler is installed
            return super().sample()

    before = signal.getsignal(signal.SIGTERM)
    links = FakeLinks()
    service = Service(make_config(state), lambda cfg: SignallingSource(), logging.getLogger("agent.test.serve"),
                      link_factory=links, clock=FakeClock())
    assert serve(service) == 0
    assert "Received SIGTERM" in caplog.text and links.last.stopped
    assert signal.getsignal(signal.SIGTERM) is before, "serve() puts the previous handler back"


def test_a_flood_of_events_loses_none(state: Path) -> None:
    with Loop(make_config(state)) as loop:
        loop.until(lambda: loop.service.session.ready and loop.service.events.empty())
        for _ in range(MAX_EVENTS_PER_TURN):
            loop.service.events.put(ev.Stopped())
        loop.service.events.put(ev.SignalEvent(ev.Signal.TERM))
        loop.until(lambda: loop.service.stopping, turns=3)


def test_reports_limit_stops_after_the_last_reply_without_spinning(state: Path) -> None:
    with Loop(make_config(state, interval=10, reply_timeout=2), max_reports=2) as loop:
        loop.until(lambda: len(set(loop.link.published_ids)) == 2, turns=100)
        first, second = dict.fromkeys(loop.link.published_ids)
        loop.link.accept(first)
        loop.run_for(15)  # past the third round's time, which never comes: the wait must not drop to zero
        assert loop.link.published_ids.count(second) >= 3, "the unanswered one is resent meanwhile"
        assert not loop.service.stopping
        loop.link.accept(second)
        loop.until(lambda: loop.service.stopping, turns=5)
        assert loop.source.rounds == 2


def test_running_line_and_status_name_the_plain_values(state: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agent.test.loop")
    with Loop(make_config(state, backlog="all")) as loop:
        loop.until(lambda: loop.link.published)
        rid = loop.link.published_ids[0]
        loop.link.accept(rid)
        loop.until(lambda: loop.outcome(rid) == "accepted")
        loop.turn()
        meta = loop.service.outbox.meta()
    assert "report every 300 s (+ up to 0 s jitter), backlog all" in caplog.text
    assert meta["connection"] == "connected" and meta["last_outcome"] == "accepted"
    assert isinstance(loop.notifier, RecordingNotifier)
    assert f"STATUS=last report {rid}; 0 pending; connected" in loop.notifier.sent
    assert json.loads(json.dumps(meta))["last_report_id"] == rid


def test_unknown_and_garbage_replies_are_ignored_with_a_limited_warning(state: Path,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agent.test.loop")
    with Loop(make_config(state), auto_reply=AutoReply.NONE) as loop:
        loop.until(lambda: loop.link.published)
        rid = loop.link.published_ids[0]
        topic = reply_topic(THING, "json", "accepted")
        loop.link.accept(rid + 1000)
        for payload in (b"", b"[]", b"{not json", json.dumps({"reportId": rid, "thingName": "other"}).encode()):
            loop.link.deliver(topic, payload)
        loop.turn()
        assert loop.outcome(rid) is None and loop.service.outbox.get(rid) is not None
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert warnings == [f"Ignored a reply for unknown report id {rid + 1000}"], "one warning per 10 s"
        loop.run_for(11)
        loop.link.deliver(topic, b"[]")
        loop.turn()
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 2 and warnings[1].endswith("(4 similar message(s) not logged)")
        loop.link.accept(rid)
        loop.until(lambda: loop.outcome(rid) == "accepted")
