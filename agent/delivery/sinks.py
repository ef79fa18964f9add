"""The sinks of one config, as the scheduler loop drives them: a checked round in, each sink's outcome counted.

- ``defender``: the report itself, stored and sent by the scheduler as before (this
  module only reports its counts);
- ``topic``: one message per round in the outbox's ``messages`` table (the same
  transaction as the round's report), published by :class:`~agent.delivery.dispatch.MessageSender`;
- ``textfile``: written after the round is committed (:func:`agent.sinks.textfile.write_atomic`).

One sink's failure never stops another: a textfile that cannot be written is counted
``failed`` and logged once per streak, a topic the broker refuses ends its messages
``failed`` without delaying anyone else's, and a full disk drops new messages
(counted) while the reports go on under their own policy.
"""

from __future__ import annotations

import errno
import logging
from pathlib import Path
from typing import Callable, Dict, List, Optional, Set, Tuple

from agent.config.model import Config, SinkConfig, SinkType, TopicDocument
from agent.config.sinks import RESERVED_QUEUE
from agent.delivery.backlog import free_disk
from agent.delivery.dispatch import MessageSender, Publish
from agent.delivery.events import PublishDone
from agent.delivery.messages import Messages, defender_counts, sink_counts
from agent.delivery.outbox import Outbox
from agent.report.cloud import CheckedRound
from agent.sinks.flat import encode_flat
from agent.sinks.health import Health, SinkHealth
from agent.sinks.textfile import TextfileError, render, write_atomic
from agent.sinks.topics import render_topic

VIOLATIONS = RESERVED_QUEUE  # the message queue of violation events (on-device behaviors); no sink may take it


class SinkSet:
    def __init__(self, config: Config, outbox: Outbox, logger: logging.Logger,
                 free: Callable[[Path], int] = free_disk) -> None:
        self.outbox = outbox
        self.messages = Messages(outbox)
        self.log = logger
        self.free = free
        self.failing: Set[str] = set()  # textfile sinks whose last write failed
        self.full_disk = False
        self.empty = False  # the messages table is known to be empty (only queue() adds to it)
        self.sender = MessageSender(self.messages, logger, config.delivery.reply_timeout,
                                    config.delivery.retry_max_delay)
        self.configure(config)

    def configure(self, config: Config) -> None:
        """Take (or, on reload, take again) the config's sinks."""
        self.config = config
        self.topics = tuple(s for s in config.sinks if s.type is SinkType.TOPIC)
        self.textfiles = tuple(s for s in config.sinks if s.type is SinkType.TEXTFILE)

    # -- a round ---------------------------------------------------------------------------

    def store_round(self, checked: CheckedRound, report_payload: bytes, now: float) -> None:
        """Queue the round's topic messages; call inside the round's outbox transaction."""
        flat = encode_flat(checked) if any(s.document is TopicDocument.FLAT for s in self.topics) else b""
        for sink in self.topics:
            payload = report_payload if sink.document is TopicDocument.REPORT else flat
            assert sink.topic is not None  # the loader requires it for a topic sink
            self.queue(sink.name, render_topic(sink.topic, checked.thing_name), payload, now, sink.max_pending)

    def queue(self, sink: str, topic: str, payload: bytes, now: float, max_pending: int) -> None:
        """One message into the outbox, unless the disk is nearly full (then it is counted as dropped)."""
        floor = self.config.delivery.min_free_disk
        if floor and self.free(self.config.state_dir) < floor:
            self.messages.count(sink, "dropped")
            if not self.full_disk:
                self.full_disk = True
                self.log.error("Less than %d bytes free in %s: new messages of the topic sinks are dropped "
                               "(counted) until there is room again", floor, self.config.state_dir)
            return
        if self.full_disk:
            self.full_disk = False
            self.log.warning("There is room in %s again; messages of the topic sinks are queued again",
                             self.config.state_dir)
        dropped = self.messages.add(sink, topic, payload, now, max_pending)
        self.empty = False
        if dropped:
            self.log.warning("Sink %r holds %d message(s) already (max_pending); dropped its %d oldest",
                             sink, max_pending, dropped)

    def write_textfiles(self, checked: CheckedRound, health: Callable[[], Health]) -> None:
        """Write every textfile sink; a failure is counted and logged once per streak, never raised.

        ``health`` is asked for only when there is a textfile (it reads the outbox's counters)."""
        if not self.textfiles:
            return
        try:
            text: Optional[str] = render(checked, health(), self.config.custom_metrics)
            broken = ""
        except ValueError as exc:  # a value that does not fit its kind: a bug, but only this sink's round
            text, broken = None, f"cannot render round {checked.report_id}: {exc}"
        for sink in self.textfiles:
            assert sink.path is not None  # the loader requires it for a textfile sink
            try:
                if text is None:
                    raise TextfileError(broken)
                write_atomic(sink.path, text)
            except TextfileError as exc:
                self.messages.count(sink.name, "failed")
                if sink.name not in self.failing:
                    self.failing.add(sink.name)
                    self.log.error("Sink %r: %s%s; the other sinks go on, and the file is written again every "
                                   "round (logged once until it works)", sink.name, exc, _hint(exc, sink.path))
                continue
            self.messages.count(sink.name, "delivered")
            if sink.name in self.failing:
                self.failing.discard(sink.name)
                self.log.info("Sink %r: wrote %s again", sink.name, sink.path)

    # -- messages on the wire ------------------------------------------------------------------

    def queues(self) -> List[str]:
        """Every message queue that may hold messages: the topic sinks and the violation events."""
        return [s.name for s in self.topics] + [VIOLATIONS]

    def publish_due(self, now: float, publish: Publish) -> None:
        """Publish what is due; a defender-only agent with nothing queued asks the outbox nothing per turn."""
        self.sender.expire(now)
        if self.empty:
            return
        pending = self.messages.sinks_pending()  # also queues of sinks gone since (reload): they drain
        if not pending:
            self.empty = True
            return
        self.sender.publish_due([q for q in self.queues() if q in pending] + sorted(set(pending) - set(self.queues())),
                                now, publish)

    def done(self, event: PublishDone, now: float) -> None:
        self.sender.done(event, now)

    def next_deadline(self) -> Optional[float]:
        return self.sender.next_deadline()

    def connected(self) -> None:
        self.sender.lost_connection()

    def disconnected(self, now: float) -> None:
        self.sender.disconnected(now)

    # -- health -------------------------------------------------------------------------------

    def health(self, defender_pending: int) -> Tuple[SinkHealth, ...]:
        counters = self.outbox.counters()
        pending = self.messages.sinks_pending()
        out: List[SinkHealth] = []
        for sink in self.config.sinks:
            if sink.type is SinkType.DEFENDER:
                counts, waiting = defender_counts(counters), defender_pending
            else:
                counts, waiting = sink_counts(counters, sink.name), pending.get(sink.name, 0)
            out.append(SinkHealth(sink.name, sink.type.value, counts["delivered"], counts["failed"],
                                  counts["dropped"], waiting))
        return tuple(out)


def _hint(exc: TextfileError, path: Path) -> str:
    """What to do about a directory the service may not write: the unit's ProtectSystem=strict makes every
    directory but its state directory read-only, so the textfile's directory must be named in a drop-in."""
    if exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
        return ""
    return (f" (under systemd: `systemctl edit defender-agent`, add [Service] ReadWritePaths={path.parent}, "
            "and make that directory writable by the defender-agent user; docs/INSTALL.md)")


def described(sinks: Tuple[SinkConfig, ...], thing_name: str) -> List[Dict[str, str]]:
    """The sinks as ``status`` shows them (saved in the status meta: status reads only state_dir)."""
    out: List[Dict[str, str]] = []
    for sink in sinks:
        where = render_topic(sink.topic or "", thing_name) if sink.type is SinkType.TOPIC else str(sink.path or "")
        out.append({"name": sink.name, "type": sink.type.value, "target": where or ""})
    return out


