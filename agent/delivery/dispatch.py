"""When the queued messages (:mod:`agent.delivery.messages`) go out, and what each PUBACK means.

Per sink, the oldest messages go first, at most ``MAX_IN_FLIGHT`` at a time, so a sink
with a long backlog never holds back another (they share one connection, nothing
else). A message is in flight from its publish until its PUBACK (or ``ack_timeout``,
after which it may go again: QoS 1 is at least once). A publish that fails without
the broker's answer (the connection went) is tried again after a backoff; one the
broker refuses (MQTT5 reason code >= 0x80) ends ``failed`` at once, and the sink's
first refusal in a row is logged with what to check. Only the loop thread calls it.
"""

from __future__ import annotations

import logging
from typing import Callable, Dict, Iterable, Optional, Set

from agent.delivery.events import MessageRef, PublishDone
from agent.delivery.messages import Messages

MAX_IN_FLIGHT = 10  # per sink
RETRY_FIRST = 5.0  # seconds after a publish failed without an answer; doubles up to the cap
Publish = Callable[[str, bytes, MessageRef], None]


class MessageSender:
    def __init__(self, messages: Messages, logger: logging.Logger, ack_timeout: float, retry_cap: float) -> None:
        self.messages = messages
        self.log = logger
        self.ack_timeout = ack_timeout
        self.retry_cap = retry_cap
        self.in_flight: Dict[int, float] = {}  # seq -> when it may go again without a PUBACK
        self.sink_of: Dict[int, str] = {}
        self.retry_at: Dict[str, float] = {}  # sink -> not before (after a failed publish)
        self.backoff: Dict[str, float] = {}
        self.refusing: Set[str] = set()  # sinks whose last message was refused (logged once per streak)

    def publish_due(self, sinks: Iterable[str], now: float, publish: Publish) -> int:
        """Publish what is due of each sink; returns how many went out."""
        sent = 0
        for sink in sinks:
            if self.retry_at.get(sink, 0.0) > now:
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
                publish(message.topic, message.payload, MessageRef(message.seq))
                self.messages.record_attempt(message.seq)
                flying += 1
                sent += 1
        return sent

    def next_deadline(self) -> Optional[float]:
        """The earliest time something may go again (an ack timeout or a retry), or None."""
        times = list(self.in_flight.values()) + list(self.retry_at.values())
        return min(times, default=None)

    def done(self, event: PublishDone, now: float) -> None:
        """The PUBACK (or the failure) of a message's publish."""
        assert isinstance(event.tag, MessageRef)
        seq = event.tag.seq
        sink = self.sink_of.pop(seq, None)
        self.in_flight.pop(seq, None)
        if event.ok:
            if self.messages.finish(seq, "delivered") and sink is not None:
                self.backoff.pop(sink, None)
                self.retry_at.pop(sink, None)
                if sink in self.refusing:
                    self.refusing.discard(sink)
                    self.log.info("Sink %r: the broker accepts its messages again", sink)
            return
        if event.refused:
            if self.messages.finish(seq, "failed") and sink is not None and sink not in self.refusing:
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

    def expire(self, now: float) -> None:
        """Forget retry times that have passed (so they stop being deadlines)."""
        for sink in [s for s, at in self.retry_at.items() if at <= now]:
            del self.retry_at[sink]
        for seq in [q for q, at in self.in_flight.items() if at <= now]:
            del self.in_flight[seq]
            self.sink_of.pop(seq, None)

    def lost_connection(self) -> None:
        """After a reconnect everything unacknowledged may go at once (the PUBACKs of the old link are gone)."""
        self.in_flight.clear()
        self.sink_of.clear()
        self.retry_at.clear()
