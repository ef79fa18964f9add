"""agent/consumers/queue.py: the lane the message queues share (MessageSender) and one consumer's queue (MessageQueue).

A real outbox in ``tmp_path``; the lane publishes through a recording callable, and the tests hand it the
PUBACKs and the link's losses as the consumer set does (``done``, ``disconnected`` on a Disconnected event,
``lost_connection`` on the next Connected), with explicit ``now`` values: no clock, no link.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import List, Tuple

import pytest

from agent.consumers.queue import (
    MAX_IN_FLIGHT,
    RETRY_FIRST,
    SUSPECT_LIMIT,
    SUSPECT_WINDOW,
    MessageQueue,
    MessageSender,
)
from agent.events import MessageRef, PublishDone
from agent.outbox.admission import Admission
from agent.outbox.messages import Messages, sink_counts
from agent.outbox.store import Outbox

LOG = logging.getLogger("agent.test.queue")
ACK = 30.0  # delivery.message_ack_timeout
CAP = 60.0  # delivery.message_retry_max_delay


class Wire:
    """The publish callable: records (topic, payload, seq) of every publish, in order."""

    def __init__(self) -> None:
        self.sent: List[Tuple[str, bytes, int]] = []

    def __call__(self, topic: str, payload: bytes, ref: MessageRef) -> None:
        self.sent.append((topic, payload, ref.seq))

    @property
    def seqs(self) -> List[int]:
        return [seq for _, _, seq in self.sent]

    def take(self) -> List[int]:
        """The seqs published since the last take."""
        seqs, self.sent = self.seqs, []
        return seqs


@pytest.fixture
def messages(tmp_path: Path) -> Messages:
    return Messages(Outbox.open(tmp_path, LOG))


@pytest.fixture
def lane(messages: Messages) -> MessageSender:
    return MessageSender(messages, LOG, ACK, CAP)


def queue(messages: Messages, sink: str, count: int) -> List[int]:
    """``count`` messages for ``sink`` on ``t/<sink>``; their seqs, oldest first."""
    return [messages.add(sink, f"t/{sink}", f"{sink}-{n}".encode(), float(n), 1000)[0] for n in range(count)]


def ok(seq: int) -> PublishDone:
    return PublishDone(MessageRef(seq), True)


def refused(seq: int) -> PublishDone:
    return PublishDone(MessageRef(seq), False, "PUBACK reason code 0x87 (NOT_AUTHORIZED)", refused=True)


def unanswered(seq: int) -> PublishDone:
    return PublishDone(MessageRef(seq), False, "AWS_ERROR_MQTT_TIMEOUT")


def counts(messages: Messages, sink: str) -> dict:
    return sink_counts(messages.outbox.counters(), sink)


def lines(caplog: pytest.LogCaptureFixture, text: str) -> List[logging.LogRecord]:
    return [r for r in caplog.records if text in r.getMessage()]


# -- MessageSender: in flight, oldest first, PUBACK ----------------------------------------------


def test_each_queue_has_at_most_max_in_flight_messages_oldest_first(messages: Messages, lane: MessageSender) -> None:
    a = queue(messages, "a", MAX_IN_FLIGHT + 5)
    b = queue(messages, "b", 3)
    wire = Wire()
    assert lane.publish_due(["a", "b"], 0.0, wire) == MAX_IN_FLIGHT + 3
    assert wire.take() == a[:MAX_IN_FLIGHT] + b, "a's backlog holds back nothing of b's"
    assert messages.oldest("a", 1)[0].attempts == 1
    assert lane.publish_due(["a", "b"], 1.0, wire) == 0 and wire.take() == []
    lane.done(ok(a[3]), 2.0)
    assert lane.publish_due(["a", "b"], 2.0, wire) == 1
    assert wire.take() == [a[MAX_IN_FLIGHT]], "one PUBACK frees one place, for the oldest not in flight"


def test_a_message_without_its_puback_goes_again_after_the_ack_timeout(messages: Messages,
                                                                       lane: MessageSender) -> None:
    (seq,) = queue(messages, "a", 1)
    wire = Wire()
    lane.publish_due(["a"], 100.0, wire)
    assert wire.take() == [seq] and lane.next_deadline() == 100.0 + ACK
    assert lane.publish_due(["a"], 100.0 + ACK - 0.001, wire) == 0
    lane.publish_due(["a"], 100.0 + ACK, wire)
    assert wire.take() == [seq], "QoS 1 is at least once: the same message again"
    assert messages.oldest("a", 1)[0].attempts == 2 and lane.next_deadline() == 100.0 + 2 * ACK


def test_a_puback_counts_the_message_delivered_once_and_removes_it(messages: Messages, lane: MessageSender) -> None:
    (seq,) = queue(messages, "a", 1)
    lane.publish_due(["a"], 0.0, Wire())
    lane.done(ok(seq), 1.0)
    assert counts(messages, "a") == {"delivered": 1, "failed": 0, "dropped": 0}
    assert messages.pending_count("a") == 0 and lane.next_deadline() is None
    lane.done(ok(seq), 2.0)  # a repeated completion of the same publish
    assert counts(messages, "a")["delivered"] == 1
    wire = Wire()
    assert lane.publish_due(["a"], 3.0 + ACK, wire) == 0 and wire.sent == []


# -- refused by the broker ------------------------------------------------------------------------


def test_a_refused_message_fails_once_and_is_not_sent_again(messages: Messages, lane: MessageSender,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOG.name)
    first, second, third, fourth = queue(messages, "a", 4)
    wire = Wire()
    lane.publish_due(["a"], 0.0, wire)
    wire.take()
    lane.done(refused(first), 1.0)
    lane.done(refused(second), 1.0)
    lane.done(refused(second), 1.5)  # repeated: counted once
    assert counts(messages, "a") == {"delivered": 0, "failed": 2, "dropped": 0}
    assert [m.seq for m in messages.oldest("a", 10)] == [third, fourth]
    lane.publish_due(["a"], 1.0 + ACK, wire)
    assert wire.take() == [third, fourth], "a refused message is never sent again"
    (error,) = lines(caplog, "refused a message")
    assert error.levelno == logging.ERROR and "'a'" in error.getMessage() and "iot:Publish" in error.getMessage()
    assert "0x87" in error.getMessage(), "the broker's reason is in the line"

    lane.done(ok(third), 2.0 + ACK)
    (recovered,) = lines(caplog, "accepts its messages again")
    assert recovered.levelno == logging.INFO and "'a'" in recovered.getMessage()
    lane.done(refused(fourth), 3.0 + ACK)
    assert len(lines(caplog, "refused a message")) == 2, "a new streak of refusals is logged again"
    assert len(lines(caplog, "accepts its messages again")) == 1


def test_refusals_of_one_queue_log_nothing_about_another(messages: Messages, lane: MessageSender,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    (a,) = queue(messages, "a", 1)
    (b,) = queue(messages, "b", 1)
    lane.publish_due(["a", "b"], 0.0, Wire())
    lane.done(refused(a), 1.0)
    lane.done(refused(b), 1.0)
    assert sorted(r.getMessage().split("'")[1] for r in lines(caplog, "refused a message")) == ["a", "b"]


# -- failed without the broker's answer: backoff --------------------------------------------------


def test_a_publish_that_failed_without_an_answer_waits_with_a_doubling_backoff_up_to_the_cap(
        messages: Messages, lane: MessageSender) -> None:
    (seq,) = queue(messages, "a", 1)
    (other,) = queue(messages, "b", 1)
    wire = Wire()
    now = 0.0
    lane.publish_due(["a"], now, wire)
    waits = []
    for _ in range(6):
        lane.done(unanswered(seq), now)
        assert messages.pending_count("a") == 1 and counts(messages, "a") == {"delivered": 0, "failed": 0,
                                                                               "dropped": 0}
        due = lane.next_deadline()
        assert due is not None
        waits.append(due - now)
        assert lane.publish_due(["a"], due - 0.001, wire) == 0, "not before the backoff"
        now = due
        assert lane.publish_due(["a"], now, wire) == 1
    assert waits == [RETRY_FIRST, 2 * RETRY_FIRST, 4 * RETRY_FIRST, 8 * RETRY_FIRST, CAP, CAP]
    assert wire.seqs == [seq] * 7
    assert lane.publish_due(["b"], 1.0, wire) == 1 and wire.seqs[-1] == other, "the other queue is not held"


def test_a_puback_resets_the_backoff(messages: Messages, lane: MessageSender) -> None:
    first, second = queue(messages, "a", 2)
    wire = Wire()
    lane.publish_due(["a"], 0.0, wire)
    lane.done(unanswered(first), 0.0)
    lane.done(unanswered(second), 0.0)
    assert lane.next_deadline() == 2 * RETRY_FIRST
    lane.publish_due(["a"], 2 * RETRY_FIRST, wire)
    lane.done(ok(first), 11.0)
    lane.done(unanswered(second), 11.0)
    assert lane.next_deadline() == 11.0 + RETRY_FIRST


def test_a_lost_connection_lets_everything_unacknowledged_go_at_once(messages: Messages,
                                                                     lane: MessageSender) -> None:
    a = queue(messages, "a", 3)
    (b,) = queue(messages, "b", 1)
    wire = Wire()
    lane.publish_due(["a"], 0.0, wire)
    lane.publish_due(["b"], 0.0, wire)
    lane.done(unanswered(b), 0.0)  # b waits for its backoff
    wire.take()
    lane.lost_connection()  # the next Connected: the old link's PUBACKs will not come
    assert lane.next_deadline() is None
    assert lane.publish_due(["a", "b"], 1.0, wire) == 4
    assert wire.take() == [*a, b]


# -- MQTT 3.1.1: a connection closed on a publish the policy denies -------------------------------


def lose(lane: MessageSender, now: float) -> None:
    """The connection lost at ``now`` and back at once (Disconnected, then Connected)."""
    lane.disconnected(now)
    lane.lost_connection()


def test_a_loss_with_messages_in_flight_starts_probing_one_message_at_a_time(messages: Messages,
                                                                             lane: MessageSender) -> None:
    a = queue(messages, "a", 3)
    b = queue(messages, "b", 3)
    wire = Wire()
    lane.publish_due(["a", "b"], 0.0, wire)
    wire.take()
    lose(lane, 1.0)
    assert lane.publish_due(["a", "b"], 2.0, wire) == 1 and wire.take() == [a[0]]
    assert lane.publish_due(["a", "b"], 2.5, wire) == 0, "one message in flight at a time"
    lane.done(ok(a[0]), 3.0)
    assert lane.publish_due(["a", "b"], 3.0, wire) == 1 and wire.take() == [b[0]], "then one of the next queue"
    lane.done(ok(b[0]), 4.0)
    assert lane.publish_due(["a", "b"], 4.0, wire) == 4, "every queue acknowledged: probing ends"
    assert wire.take() == a[1:] + b[1:]


def test_a_loss_long_after_the_last_publish_blames_no_queue(messages: Messages, lane: MessageSender) -> None:
    queue(messages, "a", 3)
    wire = Wire()
    lane.publish_due(["a"], 0.0, wire)
    lose(lane, SUSPECT_WINDOW + 0.1)
    assert lane.publish_due(["a"], 10.0, wire) == 3, "no probing: everything went again at once"


def test_a_queue_named_by_three_losses_in_a_row_is_held_for_retry_cap_and_the_others_go_on(
        messages: Messages, lane: MessageSender, caplog: pytest.LogCaptureFixture) -> None:
    denied = queue(messages, "denied", 2)
    allowed = queue(messages, "allowed", 2)
    wire = Wire()
    lane.publish_due(["denied", "allowed"], 0.0, wire)
    lose(lane, 0.5)  # both in flight: none can be blamed yet, probing starts
    now = 1.0
    for _ in range(SUSPECT_LIMIT):
        wire.take()
        assert lane.publish_due(["denied", "allowed"], now, wire) == 1 and wire.seqs == [denied[0]]
        assert lines(caplog, "was lost") == []
        lose(lane, now + 0.5)
        now += 1.0
    held_at = now - 0.5
    (error,) = lines(caplog, "was lost")
    assert error.levelno == logging.ERROR and "'denied'" in error.getMessage()
    assert f"{SUSPECT_LIMIT} times in a row" in error.getMessage() and "iot:Publish" in error.getMessage()
    assert lane.next_deadline() == held_at + CAP
    wire.take()
    assert lane.publish_due(["denied", "allowed"], now, wire) == 1 and wire.take() == [allowed[0]]
    lane.done(ok(allowed[0]), now)
    assert lane.publish_due(["denied", "allowed"], now, wire) == 1 and wire.take() == [allowed[1]]
    lane.done(ok(allowed[1]), now)
    assert lane.publish_due(["denied", "allowed"], held_at + CAP - 0.001, wire) == 0
    assert lane.publish_due(["denied", "allowed"], held_at + CAP, wire) == 2, "held for retry_cap, then again"
    assert wire.take() == denied
    assert len(lines(caplog, "was lost")) == 1
    now = held_at + CAP
    lose(lane, now + 0.5)  # probing again
    for _ in range(SUSPECT_LIMIT - 1):
        now += 1.0
        assert lane.publish_due(["denied", "allowed"], now, wire) == 1 and wire.take() == [denied[0]]
        lose(lane, now + 0.5)
    assert len(lines(caplog, "was lost")) == 1, "a new hold takes SUSPECT_LIMIT losses in a row again"


def test_a_puback_between_losses_breaks_the_streak(messages: Messages, lane: MessageSender,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    seqs = queue(messages, "a", 10)
    wire = Wire()
    lane.publish_due(["a"], 0.0, wire)
    lose(lane, 0.5)  # probing starts
    for now in (1.0, 2.0):  # named twice
        lane.publish_due(["a"], now, wire)
        lose(lane, now + 0.5)
    lane.publish_due(["a"], 3.0, wire)
    lane.done(ok(seqs[0]), 3.5)  # acknowledged: the streak ends (and so does probing)
    lane.publish_due(["a"], 4.0, wire)
    lose(lane, 4.5)  # probing again
    for now in (5.0, 6.0):  # named twice more: four in all, but not three in a row
        lane.publish_due(["a"], now, wire)
        lose(lane, now + 0.5)
    assert lines(caplog, "was lost") == []
    wire.take()
    assert lane.publish_due(["a"], 7.0, wire) == 1, "not held"
    lose(lane, 7.5)
    assert len(lines(caplog, "was lost")) == 1
    assert lane.publish_due(["a"], 8.0, wire) == 0


# -- deadlines, expiry, configure -----------------------------------------------------------------


def test_next_deadline_is_the_earliest_ack_timeout_retry_or_hold(messages: Messages, lane: MessageSender) -> None:
    assert lane.next_deadline() is None
    (a,) = queue(messages, "a", 1)
    (b,) = queue(messages, "b", 1)
    lane.publish_due(["a"], 0.0, Wire())
    lane.publish_due(["b"], 2.0, Wire())
    assert lane.next_deadline() == ACK
    lane.done(ok(a), 3.0)
    assert lane.next_deadline() == 2.0 + ACK
    lane.done(unanswered(b), 3.0)
    assert lane.next_deadline() == 3.0 + RETRY_FIRST


def test_expire_forgets_the_times_that_passed_so_they_stop_being_deadlines(messages: Messages,
                                                                           lane: MessageSender) -> None:
    (a,) = queue(messages, "a", 1)
    (b,) = queue(messages, "b", 1)
    lane.publish_due(["a", "b"], 0.0, Wire())
    lane.done(unanswered(b), 0.0)  # b: again at RETRY_FIRST; a: in flight until ACK
    lane.expire(RETRY_FIRST)
    assert lane.next_deadline() == ACK, "a passed retry time is no deadline (the loop would not sleep)"
    lane.expire(ACK)
    assert lane.next_deadline() is None
    wire = Wire()
    assert lane.publish_due(["a", "b"], ACK, wire) == 2 and wire.seqs == [a, b]


def test_expire_ends_a_hold(messages: Messages, lane: MessageSender) -> None:
    queue(messages, "a", 1)
    lane.publish_due(["a"], 0.0, Wire())
    lose(lane, 0.5)  # probing starts
    for now in range(1, SUSPECT_LIMIT + 1):
        lane.publish_due(["a"], float(now), Wire())
        lose(lane, now + 0.5)
    held_until = SUSPECT_LIMIT + 0.5 + CAP
    assert lane.next_deadline() == held_until
    lane.expire(held_until)
    assert lane.next_deadline() is None


def test_configure_takes_a_new_ack_timeout_and_retry_cap(messages: Messages, lane: MessageSender) -> None:
    (seq,) = queue(messages, "a", 1)
    lane.configure(5.0, 12.0)  # a reload
    wire = Wire()
    lane.publish_due(["a"], 0.0, wire)
    assert lane.next_deadline() == 5.0
    now, waits = 0.0, []
    for _ in range(3):
        lane.done(unanswered(seq), now)
        due = lane.next_deadline()
        assert due is not None
        waits.append(due - now)
        now = due
        lane.publish_due(["a"], now, wire)
    assert waits == [RETRY_FIRST, 10.0, 12.0]


# -- MessageQueue: max_pending and the outbox's bound ---------------------------------------------


def test_a_queue_over_max_pending_drops_its_oldest_with_a_warning(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    box = Outbox.open(tmp_path, LOG)
    q = MessageQueue("events", Messages(box), Admission(box, tmp_path, LOG), LOG)
    for n in range(3):
        q.add("t/events", b"%d" % n, float(n), 3)
    assert q.pending() == 3 and caplog.records == []
    q.add("t/events", b"3", 3.0, 3)
    q.add("t/events", b"4", 4.0, 3)
    assert q.pending() == 3 and [m.payload for m in Messages(box).oldest("events", 10)] == [b"2", b"3", b"4"]
    assert q.counts(box.counters()) == {"delivered": 0, "failed": 0, "dropped": 2}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["Sink 'events' holds 3 message(s) already (max_pending); dropped its 1 oldest"] * 2


def test_a_queue_add_keeps_the_outbox_under_its_bound_and_never_drops_the_new_message(tmp_path: Path) -> None:
    box = Outbox.open(tmp_path, LOG)
    admission = Admission(box, tmp_path, LOG, disk_free=lambda path: 1 << 40)
    cap = 128 * 1024
    admission.configure(cap, 0, 0.0)
    q = MessageQueue("bulk", Messages(box), admission, LOG)
    for n in range(30):
        with box.transaction():  # the round's transaction
            q.add("t/bulk", os.urandom(16 * 1024), float(n), 1000)
        assert admission.in_use() <= cap
        assert Messages(box).oldest("bulk", 1000)[-1].created_at == float(n), "the message just added stays"
    assert 0 < q.pending() < 30 and q.counts(box.counters())["dropped"] == 30 - q.pending()


def test_a_message_larger_than_the_bound_is_kept_and_the_older_ones_make_room(tmp_path: Path) -> None:
    box = Outbox.open(tmp_path, LOG)
    admission = Admission(box, tmp_path, LOG, disk_free=lambda path: 1 << 40)
    cap = 128 * 1024
    admission.configure(cap, 0, 0.0)
    q = MessageQueue("bulk", Messages(box), admission, LOG)
    for n in range(3):
        q.add("t/bulk", os.urandom(16 * 1024), float(n), 1000)
    with box.transaction():
        q.add("t/bulk", os.urandom(2 * cap), 3.0, 1000)  # one message always fits
    (kept,) = Messages(box).oldest("bulk", 10)
    assert kept.created_at == 3.0 and len(kept.payload) == 2 * cap
    assert q.counts(box.counters())["dropped"] == 3


def test_on_a_nearly_full_disk_a_queue_add_does_not_grow_the_outbox(tmp_path: Path) -> None:
    box = Outbox.open(tmp_path, LOG)
    free = [1 << 40]
    admission = Admission(box, tmp_path, LOG, disk_free=lambda path: free[0])
    admission.configure(16 * 1024 * 1024, 1000, 0.0)
    q = MessageQueue("bulk", Messages(box), admission, LOG)
    for n in range(5):
        q.add("t/bulk", os.urandom(16 * 1024), float(n), 1000)
    free[0] = 10  # under min_free: the bound is what was in use before the write
    used = admission.in_use()
    for n in range(5, 15):
        with box.transaction():
            q.add("t/bulk", os.urandom(16 * 1024), float(n), 1000)
        assert admission.in_use() <= used
    assert q.counts(box.counters())["dropped"] >= 10
