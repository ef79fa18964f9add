"""Queued messages on the wire: a consumer's queue (:class:`MessageQueue`) and the lane they share.

A consumer that publishes messages of its own (a topic sink, the violation events) owns a
:class:`MessageQueue`: it adds the round's message inside the round's transaction (the
outbox's bound in bytes applies at once, :mod:`agent.outbox.admission`) and reports its counts.

The queues share one :class:`MessageSender`, the lane, which publishes them and takes their
PUBACKs, because they share one connection (the consumer set drives it once per turn over every
queue that holds messages):

Per sink, the oldest messages go first, at most ``MAX_IN_FLIGHT`` at a time, so a sink
with a long backlog never holds back another (they share one connection, nothing
else). A message is in flight from its publish until its PUBACK, or until
``delivery.message_ack_timeout`` (longer than the link's own ack timeout, so awscrt has given
up on it first), after which it may go again: QoS 1 is at least once. AWS IoT Core closes the
connection on a publish the device policy denies when it cannot say so (MQTT 3.1.1):
a connection lost with messages in flight starts probing, one message at a time from
each sink, so that the next loss names its sink; a sink named three times in a row is
held back for ``retry_cap`` (logged), and the others and the reports go on. Source: AWS's own
migration guides of the Device SDK v2 ("If you try to publish to a topic that is not allowed by a
policy, AWS IoT Core service will close the connection", MQTT 3.1.1; MQTT5 gets a PUBACK with a
reason code instead); docs/SINKS.md, "Refused publishes". A publish that fails without
the broker's answer (the connection went) is tried again after a backoff; one the
broker refuses (MQTT5 reason code >= 0x80) ends ``failed`` at once, and the sink's
first refusal in a row is logged with what to check. Only the loop thread calls it.
"""

from __future__ import annotations

import logging
from typing import Callable, Dict, Iterable, Mapping, Optional, Sequence, Set, Tuple

from agent.events import MessageRef, PublishDone
from agent.outbox.admission import Admission
from agent.outbox.messages import MessageOutcome, Messages, sink_counts

MAX_IN_FLIGHT = 10  # per sink
SUSPECT_WINDOW = 5.0  # seconds: a connection lost this soon after a sink's publish, without its PUBACK, ...
SUSPECT_LIMIT = 3  # ... this many times in a row holds that sink back (see MessageSender.disconnected)
RETRY_FIRST = 5.0  # seconds after a publish failed without an answer; doubles up to the cap
Publish = Callable[[str, bytes, MessageRef], None]


class MessageQueue:
    """One consumer's queue of messages in the outbox: add under both bounds, count, report."""

    def __init__(self, name: str, messages: Messages, admission: Admission, logger: logging.Logger) -> None:
        self.name = name
        self.messages = messages
        self.admission = admission
        self.log = logger

    def add(self, topic: str, payload: bytes, now: float, max_pending: int) -> None:
        """Queue one message (inside the round's transaction): ``max_pending`` for this queue, then the
        outbox's bound in bytes over everything it holds."""
        before = self.admission.in_use()
        seq, over = self.messages.add(self.name, topic, payload, now, max_pending)
        if over:
            self.log.warning("Sink %r holds %d message(s) already (max_pending); dropped its %d oldest",
                             self.name, max_pending, over)
        self.admission.enforce(("message", seq), now, before)

    def add_many(self, batch: Sequence[Tuple[str, bytes]], now: float, max_pending: int) -> None:
        """Queue a round's messages, (topic, payload) each, inside the round's transaction, under the same two
        bounds as :meth:`add`; one warning for the round when ``max_pending`` drops messages, not one per
        message. The outbox's bound keeps the last of them (the others may go, oldest first, as for any write)."""
        if not batch:
            return
        before = self.admission.in_use()
        dropped, seq = 0, 0
        for topic, payload in batch:
            seq, over = self.messages.add(self.name, topic, payload, now, max_pending)
            dropped += over
        if dropped:
            self.log.warning("Sink %r holds %d message(s) already (max_pending); this round's %d message(s) "
                             "dropped its %d oldest", self.name, max_pending, len(batch), dropped)
        self.admission.enforce(("message", seq), now, before)

    def pending(self) -> int:
        return self.messages.pending_count(self.name)

    def counts(self, counters: Mapping[str, int]) -> Dict[str, int]:
        return sink_counts(counters, self.name)


class MessageSender:
    def __init__(self, messages: Messages, logger: logging.Logger, ack_timeout: float, retry_cap: float) -> None:
        self.messages = messages
        self.log = logger
        self.configure(ack_timeout, retry_cap)
        self.in_flight: Dict[int, float] = {}  # seq -> when it may go again without a PUBACK
        self.sink_of: Dict[int, str] = {}
        self.retry_at: Dict[str, float] = {}  # sink -> not before (after a failed publish)
        self.backoff: Dict[str, float] = {}
        self.refusing: Set[str] = set()  # sinks whose last message was refused (logged once per streak)
        self.sent_at: Dict[int, float] = {}  # seq -> when published (for the disconnect heuristic)
        self.suspect: Dict[str, int] = {}  # sink -> connections lost in a row with its messages unacknowledged
        self.held_until: Dict[str, float] = {}  # sink -> not before (the connection kept dropping on it)
        self.probing = False  # after a loss with messages in flight: one message at a time, to find the culprit
        self.confirmed: Set[str] = set()  # sinks acknowledged while probing

    def configure(self, ack_timeout: float, retry_cap: float) -> None:
        """``delivery.message_ack_timeout`` and ``delivery.message_retry_max_delay`` (at start and on reload)."""
        self.ack_timeout = ack_timeout
        self.retry_cap = retry_cap

    def publish_due(self, sinks: Iterable[str], now: float, publish: Publish) -> int:
        """Publish what is due of each sink; returns how many went out."""
        sent = 0
        if self.probing:
            return self._probe(sinks, now, publish)
        for sink in sinks:
            if self.retry_at.get(sink, 0.0) > now or self.held_until.get(sink, 0.0) > now:
                continue
            flying = sum(1 for seq, name in self.sink_of.items() if name == sink and self.in_flight[seq] > now)
            if flying >= MAX_IN_FLIGHT:
                continue
            for message in self.messages.oldest(sink, MAX_IN_FLIGHT + len(self.in_flight)):
                if flying >= MAX_IN_FLIGHT:
                    break
                if self.in_flight.get(message.seq, 0.0) > now:
                    continue
                self.in_flight[message.seq] = now + self.ack_timeout
                self.sink_of[message.seq] = sink
                self.sent_at[message.seq] = now
                publish(message.topic, message.payload, MessageRef(message.seq))
                self.messages.record_attempt(message.seq)
                flying += 1
                sent += 1
        return sent

    def _probe(self, sinks: Iterable[str], now: float, publish: Publish) -> int:
        """One message in flight at a time, from a sink not yet acknowledged since the loss: a loss now
        names its sink. Ends once every sink with messages has had one acknowledged."""
        if any(at > now for at in self.in_flight.values()):
            return 0
        ready = [s for s in sinks if self.retry_at.get(s, 0.0) <= now and self.held_until.get(s, 0.0) <= now]
        untried = [s for s in ready if s not in self.confirmed]
        if not untried:
            self.probing = False
            self.confirmed.clear()
            return self.publish_due(ready, now, publish)
        for sink in untried:
            for message in self.messages.oldest(sink, 1):
                self.in_flight[message.seq] = now + self.ack_timeout
                self.sink_of[message.seq] = sink
                self.sent_at[message.seq] = now
                publish(message.topic, message.payload, MessageRef(message.seq))
                self.messages.record_attempt(message.seq)
                return 1
            self.confirmed.add(sink)  # nothing to send: nothing to suspect
        return 0

    def next_deadline(self) -> Optional[float]:
        """The earliest time something may go again (an ack timeout or a retry), or None."""
        times = list(self.in_flight.values()) + list(self.retry_at.values()) + list(self.held_until.values())
        return min(times, default=None)

    def done(self, event: PublishDone, now: float) -> None:
        """The PUBACK (or the failure) of a message's publish."""
        assert isinstance(event.tag, MessageRef)
        seq = event.tag.seq
        sink = self.sink_of.pop(seq, None)
        self.in_flight.pop(seq, None)
        self.sent_at.pop(seq, None)
        if event.ok:
            if self.messages.finish(seq, MessageOutcome.DELIVERED) and sink is not None:
                self.backoff.pop(sink, None)
                self.retry_at.pop(sink, None)
                self.suspect.pop(sink, None)
                if self.probing:
                    self.confirmed.add(sink)
                if sink in self.refusing:
                    self.refusing.discard(sink)
                    self.log.info("Sink %r: the broker accepts its messages again", sink)
            return
        if event.refused:
            if self.messages.finish(seq, MessageOutcome.FAILED) and sink is not None and sink not in self.refusing:
                self.refusing.add(sink)
                self.log.error(
                    "Sink %r: the broker refused a message (%s); it is counted as failed and not sent again. "
                    "Check that the device policy allows iot:Publish on the sink's topic (logged once until one "
                    "is accepted)", sink, event.error)
            return
        if sink is None:
            return
        wait = min(self.retry_cap, self.backoff.get(sink, RETRY_FIRST / 2) * 2)
        self.backoff[sink] = wait
        self.retry_at[sink] = now + wait
        self.log.debug("Sink %r: publish of message %d did not complete (%s); again in %.0f s",
                       sink, seq, event.error, wait)

    def disconnected(self, now: float) -> None:
        """The connection was lost. AWS IoT Core answers a publish the device policy does not allow, over
        MQTT 3.1.1, by closing the connection (MQTT5 gets a PUBACK 0x87 instead): when that keeps happening
        right after one sink's publishes, hold that sink back so that the reports and the other sinks go on."""
        recent = {self.sink_of[seq] for seq, at in self.sent_at.items()
                  if now - at <= SUSPECT_WINDOW and seq in self.sink_of}
        if not recent:
            return
        if not self.probing or len(recent) > 1:  # several sinks in flight: none can be blamed yet
            self.probing = True
            self.confirmed.clear()
            return
        for sink in recent:
            self.suspect[sink] = self.suspect.get(sink, 0) + 1
            if self.suspect[sink] >= SUSPECT_LIMIT:
                self.suspect[sink] = 0
                self.held_until[sink] = now + self.retry_cap
                self.log.error(
                    "Sink %r: the connection was lost %d times in a row within %.0f s of publishing its messages, "
                    "before their PUBACK; AWS IoT closes the connection on a publish the device policy does not "
                    "allow (MQTT 3.1.1 has no reason codes). Holding this sink's messages for %.0f s so the "
                    "reports and the other sinks go on; check iot:Publish on its topic", sink, SUSPECT_LIMIT,
                    SUSPECT_WINDOW, self.retry_cap)

    def expire(self, now: float) -> None:
        """Forget retry and hold times that have passed (so they stop being deadlines)."""
        for sink in [s for s, at in self.held_until.items() if at <= now]:
            del self.held_until[sink]
        for sink in [s for s, at in self.retry_at.items() if at <= now]:
            del self.retry_at[sink]
        for seq in [q for q, at in self.in_flight.items() if at <= now]:
            del self.in_flight[seq]
            self.sink_of.pop(seq, None)
            self.sent_at.pop(seq, None)

    def lost_connection(self) -> None:
        """After a reconnect everything unacknowledged may go at once (the PUBACKs of the old link are gone)."""
        self.in_flight.clear()
        self.sink_of.clear()
        self.sent_at.clear()
        self.retry_at.clear()
