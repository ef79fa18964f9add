"""agent/consumers/defender/delivery.py: which pending report goes out when, and what each reply settles.

A real outbox, a real :class:`ResendClock`, and a real :class:`Session` over a :class:`FakeLink`, on a
:class:`FakeClock`; the link's events are fed back as the loop does (link events to the session, reply
messages to the delivery). The fake link is strict: a report published while its reply topics are not
subscribed is a test failure (``LinkMisuse``).
"""

from __future__ import annotations

import logging
import queue
import random
from pathlib import Path
from typing import Any, Dict, List, Optional, Set

import pytest

from agent import events as ev
from agent.catalog import PayloadFormat
from agent.consumers.defender.delivery import UNANSWERED_HINT_AFTER, ReportDelivery
from agent.consumers.defender.resend import ResendClock
from agent.mqtt.session import LINK_EVENTS, Session
from agent.mqtt.topics import reply_topic, report_topic
from agent.outbox.store import LedgerEntry, Outbox, Pending
from devkit.clock import FakeClock
from devkit.fake_link import FakeLink, FakeLinks
from tests.loop import THING, make_config

LOG = logging.getLogger("agent.test.delivery")
REPLY_TIMEOUT = 2.0  # make_config's delivery.reply_timeout


class Rig:
    """A ReportDelivery on a connected session whose json reply topics are subscribed."""

    def __init__(self, tmp_path: Path, **overrides: Any) -> None:
        state = tmp_path / "state"
        self.config = make_config(state, **overrides)
        self.clock = FakeClock()
        self.events: queue.SimpleQueue[object] = queue.SimpleQueue()
        self.links = FakeLinks()
        self.outbox = Outbox.open(state, LOG)
        self.session = Session(self.config, self.events, LOG, self.links, self.clock)
        self.resend = ResendClock(random.Random(1))
        self.saved: List[Dict[str, Any]] = []
        self.wanted: Set[PayloadFormat] = {PayloadFormat.JSON}
        self.delivery = ReportDelivery(lambda: self.config, self.outbox, self.session, self.resend, self.clock, LOG,
                                       self.save_meta, lambda: set(self.wanted))
        self.session.start(self.config)
        self.pump()
        assert self.session.ready and self.session.subscribed_formats == {"json"}

    @property
    def link(self) -> FakeLink:
        return self.links.last

    def save_meta(self, **values: Any) -> None:
        self.saved.append(values)
        self.outbox.set_meta(values)

    def pump(self) -> None:
        """Hand the queued events to their reader, as the loop does."""
        while not self.events.empty():
            event = self.events.get_nowait()
            if isinstance(event, LINK_EVENTS):
                self.session.handle(event, self.clock.now, THING, lambda: set(self.wanted))
            elif isinstance(event, ev.Message):
                self.delivery.on_message(event)

    def store(self, report_id: int, fmt: PayloadFormat = PayloadFormat.JSON) -> None:
        """A round's report, committed (the consumer's part)."""
        self.outbox.add(Pending.new(report_id, fmt, b'{"report": %d}' % report_id, self.clock.wall()))
        self.resend.schedule(report_id, self.clock.now)

    def turn(self) -> None:
        self.delivery.publish_due(self.clock.now)
        self.pump()

    def until_due(self) -> None:
        """Advance the clock to the next resend deadline and take a turn."""
        due = self.resend.next_deadline()
        assert due is not None, "nothing is scheduled"
        self.clock.now = max(self.clock.now, due)
        self.turn()

    def entry(self, report_id: int) -> Optional[LedgerEntry]:
        return next((e for e in self.outbox.ledger() if e.report_id == report_id), None)


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path)


def messages(caplog: pytest.LogCaptureFixture, level: int) -> List[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level]


# -- what goes out ----------------------------------------------------------------------------------


def test_only_the_newest_pending_report_is_published_and_the_older_unsent_ones_end_superseded(
        rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOG.name)
    for rid in (101, 102, 103):
        rig.store(rid)
    rig.turn()
    assert rig.link.published_ids == [103]
    assert rig.link.published[0].topic == report_topic(THING, "json") and rig.link.published[0].payload == (
        b'{"report": 103}')
    for rid in (101, 102):
        entry = rig.entry(rid)
        assert entry is not None and entry.outcome == "superseded" and entry.attempts == 0
        assert entry.message == "no reply before the newer report 103 was published"
    assert rig.outbox.pending_ids() == [103] and set(rig.resend.due_at) == {103}
    newest = rig.outbox.get(103)
    assert newest is not None and newest.attempts == 1
    assert "Report 101 superseded: no reply before the newer report 103 was published" in messages(caplog, logging.INFO)
    assert rig.delivery.unanswered_streak == 0, "a report never sent is not an unanswered one"


def test_a_published_report_ends_unanswered_once_a_newer_one_goes_and_ids_only_go_up(
        rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    rig.store(101)
    rig.turn()
    rig.clock.advance(0.5)  # 101 is not due again yet
    rig.store(102)
    rig.turn()
    assert rig.link.published_ids == [101, 102]
    entry = rig.entry(101)
    assert entry is not None and entry.outcome == "unanswered" and entry.attempts == 1
    assert entry.message == "no reply before the newer report 102 was published"
    assert "Report 101 unanswered after 1 publish(es): no reply before the newer report 102 was published" in (
        messages(caplog, logging.WARNING))
    assert rig.saved[-1] == {"last_outcome": "unanswered", "last_outcome_id": 101}
    for _ in range(4):
        rig.until_due()
    assert rig.link.published_ids == [101] + [102] * 5, "102 goes again, 101 never after it"


def test_an_older_report_stays_pending_until_the_newer_one_is_really_published(rig: Rig) -> None:
    rig.store(101)
    rig.turn()
    rig.store(102, PayloadFormat.CBOR)  # its reply topics are not subscribed yet
    rig.wanted = {PayloadFormat.JSON, PayloadFormat.CBOR}  # as the consumer says: every pending report's format
    rig.delivery.publish_due(rig.clock.now)
    assert rig.link.published_ids == [101]
    assert rig.outbox.pending_ids() == [101, 102], "101 ends only once 102 is on the wire"
    rig.pump()  # the SUBACK
    rig.until_due()
    assert rig.link.published_ids == [101, 102]
    entry = rig.entry(101)
    assert entry is not None and entry.outcome == "unanswered"


def test_a_report_without_a_reply_to_max_attempts_publishes_ends_unanswered(tmp_path: Path) -> None:
    rig = Rig(tmp_path, max_attempts=3)
    rig.store(101)
    rig.turn()
    for _ in range(3):
        rig.until_due()
    assert rig.link.published_ids == [101, 101, 101]
    entry = rig.entry(101)
    assert entry is not None and entry.outcome == "unanswered" and entry.attempts == 3
    assert entry.message == "no reply to 3 publish(es) (delivery.max_attempts)"
    assert rig.outbox.pending_ids() == [] and rig.resend.next_deadline() is None
    rig.clock.advance(3600)
    rig.turn()
    assert rig.link.published_ids == [101, 101, 101]


def test_a_report_whose_reply_topics_are_not_subscribed_asks_for_them_and_waits(rig: Rig) -> None:
    rig.wanted = {PayloadFormat.JSON, PayloadFormat.CBOR}
    rig.store(101, PayloadFormat.CBOR)
    rig.delivery.publish_due(rig.clock.now)  # the SUBACK is not in yet
    assert rig.link.published_ids == []
    cbor_topics = [reply_topic(THING, "cbor", o) for o in ("accepted", "rejected")]
    assert rig.link.subscribe_calls[-1] == cbor_topics + [reply_topic(THING, "json", o)
                                                         for o in ("accepted", "rejected")]
    assert rig.resend.next_deadline() == rig.clock.now + REPLY_TIMEOUT, "not due again on every turn"
    calls = len(rig.link.subscribe_calls)
    rig.clock.advance(REPLY_TIMEOUT / 2)
    rig.delivery.publish_due(rig.clock.now)
    assert len(rig.link.subscribe_calls) == calls and rig.link.published_ids == []
    rig.pump()  # the SUBACK
    assert "cbor" in rig.session.subscribed_formats
    rig.until_due()
    assert rig.link.published_ids == [101] and rig.link.published[0].topic == report_topic(THING, "cbor")


def test_after_unanswered_hint_after_unanswered_reports_in_a_row_the_journal_says_once_what_to_check(
        rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    def hints() -> List[str]:
        return [m for m in messages(caplog, logging.ERROR) if m.startswith("No reply to the last")]

    rig.store(101)
    rig.turn()
    for rid in range(102, 102 + UNANSWERED_HINT_AFTER):  # each newer report ends the one before unanswered
        assert hints() == []
        rig.store(rid)
        rig.turn()
    (hint,) = hints()
    assert f"No reply to the last {UNANSWERED_HINT_AFTER} reports" in hint
    assert "that this AWS account has Device Defender Detect: AWS closed it to new customers" in hint
    assert "docs/WITHOUT-DETECT.md" in hint
    for topic in (reply_topic(THING, "json", "accepted"), reply_topic(THING, "json", "rejected"),
                  report_topic(THING, "json")):
        assert topic in hint
    for _ in range(2):
        rid += 1
        rig.store(rid)
        rig.turn()
    assert len(hints()) == 1, "logged once"
    rig.link.accept(rid)
    rig.pump()
    assert rig.delivery.unanswered_streak == 0
    for _ in range(UNANSWERED_HINT_AFTER + 1):
        rid += 1
        rig.store(rid)
        rig.turn()
    assert len(hints()) == 2, "... until a reply arrives"


# -- what a reply settles ---------------------------------------------------------------------------


def test_an_accepted_reply_settles_its_report(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOG.name)
    rig.store(101)
    rig.turn()
    rig.clock.advance(0.7)
    rig.link.accept(101)
    rig.pump()
    assert rig.outbox.outcome_of(101) == "accepted" and rig.outbox.pending_ids() == []
    assert rig.delivery.last_accepted_at == rig.clock.wall()
    assert rig.saved[-1] == {"last_outcome": "accepted", "last_outcome_id": 101, "last_accepted_at": rig.clock.wall()}
    assert rig.resend.next_deadline() is None
    assert "Report 101 accepted" in messages(caplog, logging.INFO)
    rig.clock.advance(3600)
    rig.turn()
    assert rig.link.published_ids == [101], "not sent again"


def test_a_rejected_reply_keeps_the_services_code_and_message(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    rig.store(101)
    rig.turn()
    rig.link.reject(101, code="InvalidPayload", message="Malformed metrics report")
    rig.pump()
    entry = rig.entry(101)
    assert entry is not None and entry.outcome == "rejected"
    assert (entry.code, entry.message) == ("InvalidPayload", "Malformed metrics report")
    assert rig.delivery.last_accepted_at is None and rig.saved[-1] == {"last_outcome": "rejected",
                                                                      "last_outcome_id": 101}
    assert ("Report 101 rejected by the service: 'InvalidPayload': 'Malformed metrics report' "
            "(not resent; kept in the ledger)") in messages(caplog, logging.WARNING)
    rig.clock.advance(3600)
    rig.turn()
    assert rig.link.published_ids == [101] and rig.resend.next_deadline() is None


def test_a_reply_without_report_id_settles_the_one_report_awaiting_a_reply(
        rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    rig.store(101)
    rig.turn()
    rig.store(102)  # stored, not yet published: it awaits no reply
    rig.link.reject(101, with_id=False)  # the troubleshooting guide's reply
    rig.pump()
    entry = rig.entry(101)
    assert entry is not None and entry.outcome == "rejected" and entry.code == "InvalidPayload"
    assert rig.outbox.pending_ids() == [102]
    (line,) = [m for m in messages(caplog, logging.WARNING) if "Report 101 rejected" in m]
    assert line.endswith("(the reply named no report id; it is the one report awaiting a reply) "
                         "(not resent; kept in the ledger)")


@pytest.mark.parametrize("published", [0, 2])
def test_a_reply_without_report_id_is_ignored_when_it_cannot_be_placed(
        rig: Rig, caplog: pytest.LogCaptureFixture, published: int) -> None:
    for rid in (101, 102):
        rig.store(rid)
    for rid in (101, 102)[:published]:  # as an earlier run left them: both sent, neither answered
        rig.outbox.record_attempt(rid, rig.clock.wall(), rig.clock.wall() + REPLY_TIMEOUT)
    rig.link.reject(101, with_id=False)
    rig.pump()
    assert rig.outbox.pending_ids() == [101, 102] and rig.outbox.ledger() == []
    assert messages(caplog, logging.WARNING) == [
        f"Ignored a rejected reply that names no report id ({published} report(s) await a reply, so it is "
        "ambiguous): 'InvalidPayload': 'Malformed metrics report'"]
    assert rig.saved == []


def test_a_late_or_repeated_reply_changes_nothing(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    rig.store(101)
    rig.turn()
    rig.link.accept(101)
    rig.pump()
    saved = list(rig.saved)
    caplog.clear()
    rig.link.accept(101)  # repeated
    rig.link.reject(101)  # late, and contradicting
    rig.pump()
    assert rig.outbox.outcome_of(101) == "accepted" and rig.outbox.counters().get("rejected") is None
    assert rig.outbox.counters()["accepted"] == 1 and rig.saved == saved
    assert messages(caplog, logging.WARNING) == [], "a QoS 1 reply may come twice: nothing to warn about"


def test_a_reply_for_an_unknown_report_id_is_ignored_with_a_warning(rig: Rig,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    rig.store(101)
    rig.turn()
    rig.link.accept(999)
    rig.pump()
    assert rig.outbox.pending_ids() == [101] and rig.outbox.ledger() == [] and rig.saved == []
    assert messages(caplog, logging.WARNING) == ["Ignored a reply for unknown report id 999"]


def test_an_unusable_message_on_a_reply_topic_is_ignored_with_a_warning(rig: Rig,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    rig.store(101)
    rig.turn()
    rig.link.deliver(reply_topic(THING, "json", "accepted"), b"\xff\x00not a reply{")
    rig.pump()
    assert rig.outbox.pending_ids() == [101] and rig.outbox.ledger() == []
    (warning,) = messages(caplog, logging.WARNING)
    assert warning.startswith(f"Ignored a message on {reply_topic(THING, 'json', 'accepted')!r}: ")


# -- the resend clock follows the outbox --------------------------------------------------------------


def test_resend_times_of_reports_the_outbox_no_longer_holds_are_forgotten(rig: Rig) -> None:
    rig.store(101)
    rig.turn()
    assert 101 in rig.resend
    rig.outbox.drop([101], "outbox full (cap 262144 bytes)", rig.clock.wall())  # the outbox's bound, elsewhere
    rig.turn()
    assert 101 not in rig.resend and rig.resend.next_deadline() is None
    rig.store(102)
    rig.clock.advance(REPLY_TIMEOUT)
    rig.turn()
    assert rig.link.published_ids == [101, 102] and set(rig.resend.due_at) == {102}
