"""The consumers of one config, as the loop drives them: built from the registry, iterated, reloaded whole.

:data:`SINKS` maps a sink type to its consumer: a new sink type is its module plus one line
here. The violation events are a consumer too (always present, idle without behaviors). The
set also owns the lane that every message queue shares (:class:`MessageSender`: one
connection, one 3.1.1 heuristic over all queues) and the queues that only an earlier config
named (they drain, storing nothing new).
"""

from __future__ import annotations

import random
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from agent import events as ev
from agent.catalog import PayloadFormat
from agent.config.model import Config, SinkConfig, SinkType
from agent.consumers.base import Consumer, Context, Round, Step
from agent.consumers.defender.consumer import DefenderConsumer
from agent.consumers.queue import MessageSender
from agent.consumers.shadow.consumer import ShadowConsumer
from agent.consumers.textfile import TextfileConsumer
from agent.consumers.topic import TopicConsumer
from agent.consumers.violations.consumer import ViolationsConsumer
from agent.outbox.ids import OutboxIds
from agent.outbox.messages import Messages
from agent.remote.outcome import Outcome
from agent.sinks.health import Health, SinkHealth
from agent.sinks.topics import render_topic

SinkFactory = Callable[[Context, SinkConfig, Config], Consumer]

SINKS: Dict[SinkType, SinkFactory] = {
    SinkType.TOPIC: TopicConsumer,
    SinkType.TEXTFILE: TextfileConsumer,
    # SinkType.DEFENDER: the defender consumer is built once, below (it is also what ends the reports
    # of a config without one).
}


class ConsumerSet:
    def __init__(self, ctx: Context, config: Config, ids: OutboxIds, rng: random.Random) -> None:
        self.ctx = ctx
        self.config = config
        self.messages = Messages(ctx.outbox)
        self.lane = MessageSender(self.messages, ctx.log.getChild("sinks"), config.delivery.message_ack_timeout,
                                  config.delivery.message_retry_max_delay)
        self.empty = False  # the messages table is known to be empty (only a store adds to it)
        self.defender = DefenderConsumer(ctx, config, ids, rng)
        self.violations = ViolationsConsumer(ctx, config)
        self.sinks: List[Consumer] = self._build_sinks(config, {})
        self.retired: List[Consumer] = []
        self.shadow = ShadowConsumer(ctx, config, self.alarms) if config.shadow is not None else None

    def open(self) -> None:
        """At start: the defender's leftovers, and a draining queue for every message queue no sink names."""
        self.defender.open()
        named = {q for c in self.all() for q in c.queues()}
        self.retired = [TopicConsumer(self.ctx, None, self.config, name)
                        for name in sorted(self.messages.sinks_pending()) if name not in named]

    def _build_sinks(self, config: Config, reuse: Dict[str, Consumer]) -> List[Consumer]:
        """One consumer per configured sink (the defender's own); ``reuse`` keeps a running one of the same
        name and type (it adopts the new config through its prepare step)."""
        out: List[Consumer] = []
        for sink in config.sinks:
            if sink.type is SinkType.DEFENDER:
                out.append(self.defender)
            elif sink.name in reuse and reuse[sink.name].kind is sink.type:
                out.append(reuse[sink.name])
            else:
                out.append(SINKS[sink.type](self.ctx, sink, config))
        return out

    def all(self) -> List[Consumer]:
        """Every consumer: the shadow (first: the defender takes every other message), the configured sinks in
        config order, then the violation events, then retired ones."""
        active = list(self.sinks)
        if self.defender not in active:
            active.append(self.defender)  # retired: it ends what an earlier config left pending
        return [*([self.shadow] if self.shadow is not None else []), *active, self.violations, *self.retired]

    def alarms(self) -> Tuple[str, ...]:
        """The behaviors in alarm (what the shadow reports)."""
        return tuple(name for name, state in self.violations.states.items() if state.in_alarm)

    # -- a round --------------------------------------------------------------------------------

    def store(self, rnd: Round) -> List[Step]:
        """Every consumer's writes (inside the round's transaction); returns the steps for after the commit.

        One transaction for all: an exception in any consumer's ``store`` rolls the whole round back (no
        consumer keeps it; the guard logs it, :mod:`agent.guard`). A sink's delivery failures (a refused
        publish, an unwritable textfile) are not exceptions: they are counted on that sink alone."""
        steps = [step for step in (c.store(rnd) for c in self.all()) if step is not None]
        self.empty = False
        return steps

    # -- reload ---------------------------------------------------------------------------------

    def prepare(self, config: Config) -> Step:
        """Check ``config`` against every consumer (raises :class:`agent.errors.AgentError`), change nothing;
        the returned step adopts it."""
        by_name = {c.name: c for c in self.sinks if c is not self.defender}
        sinks = self._build_sinks(config, by_name)
        kept = [c for c in sinks if c in by_name.values()]
        steps = [c.prepare(config) for c in (*kept, self.defender, self.violations)]
        gone = [c for c in by_name.values() if c not in sinks]
        retiring = [c.prepare(config) for c in gone]
        shadow = self.shadow if config.shadow is not None else None  # kept (prepare adopts), made or dropped
        if shadow is not None:
            steps.append(shadow.prepare(config))

        def adopt() -> None:
            for step in (*steps, *retiring):
                step()
            self.config = config
            self.sinks = sinks
            self.retired = [c for c in (*self.retired, *gone) if c.queues() and c.pending()]
            self.lane.configure(config.delivery.message_ack_timeout, config.delivery.message_retry_max_delay)
            if config.shadow is None and self.shadow is not None:
                self.shadow.close()  # its topics are no longer subscribed at connect
            made = ShadowConsumer(self.ctx, config, self.alarms) if config.shadow is not None and shadow is None \
                else None
            self.shadow = shadow or made

        return adopt

    # -- the wire -------------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        for consumer in self.all():
            consumer.tick(now)
        if self.ctx.session.connected:
            self._publish_messages(now)

    def _publish_messages(self, now: float) -> None:
        """The queued messages of every queue, through the lane; a defender-only agent asks the outbox nothing."""
        self.lane.expire(now)
        if self.empty:
            return
        pending = self.messages.sinks_pending()
        if not pending:
            self.empty = True
            self.retired = [c for c in self.retired if not c.queues()]
            return
        order = [q for c in self.all() for q in c.queues() if q in pending]
        self.lane.publish_due(order + sorted(set(pending) - set(order)), now, self.ctx.session.publish)

    def next_deadline(self) -> Optional[float]:
        times = [t for t in (c.next_deadline() for c in self.all()) if t is not None]
        if self.ctx.session.connected:
            lane = self.lane.next_deadline()
            if lane is not None:
                times.append(lane)
        return min(times, default=None)

    def handle(self, event: object, now: float) -> None:
        """Hand ``event`` to its consumer; link events go to every consumer and the lane."""
        if isinstance(event, ev.PublishDone) and isinstance(event.tag, ev.MessageRef):
            self.lane.done(event, now)
            return
        if isinstance(event, ev.Connected):
            self.lane.lost_connection()
        elif isinstance(event, ev.Disconnected):
            self.lane.disconnected(now)
        for consumer in self.all():
            if consumer.handle(event, now):
                return

    # -- what they show -------------------------------------------------------------------------

    def pending_reports(self) -> int:
        return self.defender.pending()

    def pending_total(self) -> int:
        return self.ctx.outbox.pending_count() + self.messages.pending_count()

    def health(self) -> Tuple[SinkHealth, ...]:
        counters = self.ctx.outbox.counters()
        return tuple(h for c in self.sinks for h in c.health(counters))

    def status(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"sinks": described(self.config)}
        for consumer in self.all():
            out.update(consumer.status())
        return out

    def since_accepted(self, wall: float) -> Optional[float]:
        """Seconds from Device Defender's last accepted report to ``wall`` (None before the first)."""
        accepted = self.defender.last_accepted_at
        return None if accepted is None else max(0.0, wall - accepted)

    def health_of(self, rnd: Round) -> Health:
        """The agent's health as of a round: its collectors, the outbox, the sinks."""
        return Health(rnd.collectors, self.pending_total(), self.since_accepted(rnd.wall), self.health())

    def wanted_formats(self) -> Set[PayloadFormat]:
        return self.defender.wanted_formats()

    def remote_outcome(self, outcome: Outcome) -> None:
        for consumer in self.all():
            consumer.remote_outcome(outcome)

    def close(self) -> None:
        for consumer in self.all():
            consumer.close()


def described(config: Config) -> List[Dict[str, str]]:
    """The sinks as ``status`` shows them (saved in the status meta: status reads only state_dir)."""
    out: List[Dict[str, str]] = []
    for sink in config.sinks:
        where = render_topic(sink.topic or "", config.thing_name) if sink.type is SinkType.TOPIC else str(sink.path or "")
        out.append({"name": sink.name, "type": sink.type.value, "target": where or ""})
    return out
