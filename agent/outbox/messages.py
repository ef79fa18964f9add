"""Messages of the topic sinks (and violation events) in the durable outbox, until the broker's PUBACK.

A message is one MQTT publish (QoS 1) on a topic of the user's choice; its outcome is
the broker's PUBACK, since no reply topic answers it. It lives in the outbox's
``messages`` table (the same SQLite file and transactions as the reports, see
:mod:`agent.outbox.store`) from the round that made it until it ends in exactly one
outcome, counted per sink in the ``counters`` table as ``sink.NAME.OUTCOME``:

- ``delivered``: the broker acknowledged it;
- ``failed``: the broker refused it (an MQTT5 PUBACK reason code of 0x80 or more, e.g.
  0x87 not authorized): sending the same bytes again would be refused again;
- ``dropped``: by policy, the oldest of a sink once it holds ``max_pending`` messages
  (an outage longer than the sink's budget).

A textfile sink has no messages; its writes are counted under the same names
(``delivered`` a write, ``failed`` a write that raised) by :meth:`Messages.count`.
Errors are the outbox's (storage errors unwrapped, see :mod:`agent.outbox.store`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Tuple

from agent.outbox.store import Outbox, ReportOutcome
from agent.schema import TextEnum


class MessageOutcome(TextEnum):
    """A message's one outcome (see above), in its counter's name ``sink.NAME.OUTCOME``."""

    DELIVERED = "delivered"
    FAILED = "failed"
    DROPPED = "dropped"


@dataclass(frozen=True)
class QueuedMessage:
    seq: int
    sink: str
    topic: str
    payload: bytes
    created_at: float
    attempts: int


def counter_name(sink: str, outcome: MessageOutcome) -> str:
    return f"sink.{sink}.{outcome}"


class Messages:
    """The message queue on an open :class:`Outbox` (one thread: the scheduler loop)."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.conn = outbox.conn

    def add(self, sink: str, topic: str, payload: bytes, now: float, max_pending: int) -> Tuple[int, int]:
        """Queue a message; over ``max_pending`` the sink's oldest are dropped (counted).

        Returns (the message's seq, how many were dropped). Durable (it joins the caller's transaction when
        there is one, e.g. the round's); the outbox's bound in bytes is the caller's next step
        (:meth:`agent.outbox.admission.Admission.enforce`)."""
        with self.outbox.transaction():
            seq = int(self.conn.execute("INSERT INTO messages (sink, topic, payload, created_at) VALUES (?,?,?,?)",
                                        (sink, topic, payload, now)).lastrowid or 0)
            over = self.pending_count(sink) - max_pending
            if over <= 0:
                return seq, 0
            self.conn.execute(
                "DELETE FROM messages WHERE seq IN (SELECT seq FROM messages WHERE sink=? ORDER BY seq LIMIT ?)",
                (sink, over))
            self.outbox.bump(counter_name(sink, MessageOutcome.DROPPED), over)
            return seq, over

    def oldest(self, sink: str, limit: int) -> List[QueuedMessage]:
        rows = self.conn.execute(
            "SELECT seq, sink, topic, payload, created_at, attempts FROM messages WHERE sink=? ORDER BY seq LIMIT ?",
            (sink, limit)).fetchall()
        return [QueuedMessage(int(r[0]), str(r[1]), str(r[2]), bytes(r[3]), float(r[4]), int(r[5])) for r in rows]

    def sinks_pending(self) -> Dict[str, int]:
        return {str(k): int(v) for k, v in self.conn.execute("SELECT sink, COUNT(*) FROM messages GROUP BY sink")}

    def pending_count(self, sink: Optional[str] = None) -> int:
        if sink is None:
            return int(self.conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0])
        return int(self.conn.execute("SELECT COUNT(*) FROM messages WHERE sink=?", (sink,)).fetchone()[0])

    def record_attempt(self, seq: int) -> None:
        """Not durable on its own: a lost attempt count changes nothing but ``status``."""
        with self.outbox.transaction(durable=False):
            self.conn.execute("UPDATE messages SET attempts=attempts+1 WHERE seq=?", (seq,))

    def finish(self, seq: int, outcome: MessageOutcome) -> bool:
        """End a message with ``delivered`` or ``failed``; False when it was no longer queued (counted once)."""
        outcome = MessageOutcome(outcome)  # ValueError for any other string: a bug of the caller
        with self.outbox.transaction():
            row = self.conn.execute("SELECT sink FROM messages WHERE seq=?", (seq,)).fetchone()
            if row is None:
                return False
            self.conn.execute("DELETE FROM messages WHERE seq=?", (seq,))
            self.outbox.bump(counter_name(str(row[0]), outcome))
            return True

    def count(self, sink: str, outcome: MessageOutcome) -> None:
        """Count an outcome that has no queued message (a textfile write)."""
        outcome = MessageOutcome(outcome)  # ValueError for any other string: a bug of the caller
        self.outbox.bump(counter_name(sink, outcome), durable=False)  # a lost count is harmless


def sink_counts(counters: Mapping[str, int], sink: str) -> Dict[str, int]:
    """``{"delivered": n, "failed": n, "dropped": n}`` of one sink, from the outbox's counters."""
    return {outcome: counters.get(counter_name(sink, outcome), 0) for outcome in MessageOutcome}


def defender_counts(counters: Mapping[str, int]) -> Dict[str, int]:
    """The defender sink's reports in a sink's terms: ``delivered`` = accepted, ``failed`` = rejected or
    unanswered, ``dropped`` = dropped or superseded (from the outbox's outcome counters)."""
    n = {outcome: counters.get(outcome, 0) for outcome in ReportOutcome}
    return {MessageOutcome.DELIVERED: n[ReportOutcome.ACCEPTED],
            MessageOutcome.FAILED: n[ReportOutcome.REJECTED] + n[ReportOutcome.UNANSWERED],
            MessageOutcome.DROPPED: n[ReportOutcome.DROPPED] + n[ReportOutcome.SUPERSEDED]}
