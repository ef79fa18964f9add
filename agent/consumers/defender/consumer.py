"""The Device Defender sink as a consumer: each round's report stored, published, settled by its reply.

In the round's transaction the report enters the outbox under the backlog policy
(:mod:`agent.outbox.backlog`) and the outbox's bound; once committed, it is due at once.
:class:`~agent.consumers.defender.delivery.ReportDelivery` publishes the newest pending
report and settles it from the reply; :class:`~agent.consumers.defender.resend.ResendClock`
says when it goes again. Without a defender sink in the config (a retired defender), no
report is stored and the pending ones from an earlier config end ``dropped``.
"""

from __future__ import annotations

import random
from typing import Mapping, Optional, Set, Tuple

from agent import events as ev
from agent.catalog import PayloadFormat
from agent.config.model import Config, SinkType
from agent.consumers.base import Consumer, Context, Round, Step
from agent.consumers.defender.delivery import ReportDelivery
from agent.consumers.defender.resend import ResendClock
from agent.outbox.backlog import Backlog
from agent.outbox.ids import OutboxIds
from agent.outbox.messages import MessageOutcome, defender_counts
from agent.outbox.store import Pending
from agent.sampling import network_stats
from agent.sinks.health import SinkHealth

NO_DEFENDER = "the config has no defender sink"


class DefenderConsumer(Consumer):
    kind = SinkType.DEFENDER

    def __init__(self, ctx: Context, config: Config, ids: OutboxIds, rng: random.Random) -> None:
        self.ctx = ctx
        self.config = config
        self.name = config.defender.name if config.defender is not None else "defender"
        self.retired = config.defender is None
        self.resend = ResendClock(rng)
        self.backlog = Backlog(ctx.outbox, ids, ctx.admission, ctx.log, clock=ctx.clock.wall)
        self.reports = ReportDelivery(lambda: self.config, ctx.outbox, ctx.session, self.resend, ctx.clock,
                                      ctx.log, ctx.save_meta, self.wanted_formats)
        accepted_at = ctx.outbox.meta().get("last_accepted_at")
        self.reports.last_accepted_at = float(accepted_at) if isinstance(accepted_at, (int, float)) else None
        self.leftovers = False  # retired with reports pending from an earlier config: they end dropped
        self.refold = False  # the backlog mode changed on reload: fold what is pending

    def open(self) -> None:
        """At start: drop what a defender-less config cannot send, fold the backlog, schedule what is pending."""
        self.leftovers = self.retired
        self._end_leftovers()
        if self.retired:
            return
        self.backlog.fold_pending(self.config.delivery.backlog)
        self.resend.schedule_all(self.ctx.outbox.pending_ids(), self.ctx.clock.monotonic())
        if self.resend:
            self.ctx.log.info("Outbox holds %d pending report(s) from before; sending them when connected",
                              len(self.resend))

    def _end_leftovers(self) -> None:
        """Retired: the pending reports of an earlier config end ``dropped`` (retried each turn until written)."""
        if not self.leftovers:
            return
        ids = self.ctx.outbox.pending_ids()
        if ids:
            self.ctx.outbox.drop(ids, NO_DEFENDER, self.ctx.clock.wall())
            self.resend.forget_all(ids)
            self.ctx.log.warning("Dropped %d pending report(s): the config has no defender sink any more", len(ids))
        self.leftovers = False

    # -- the round --------------------------------------------------------------------------

    def store(self, rnd: Round) -> Optional[Step]:
        if self.retired:
            return None
        report = Pending.new(rnd.report_id, rnd.report.format, rnd.report.payload, rnd.wall,
                             network_stats(rnd.samples))
        change = self.backlog.store(report, self.config.delivery)

        def committed() -> None:
            self.resend.forget_all(change.removed)
            if change.stored is not None:
                self.resend.schedule(change.stored.report_id, rnd.now)
            if change.note:
                self.ctx.log.info("Report %d %s", rnd.report_id, change.note)

        return committed

    def prepare(self, config: Config) -> Step:
        """Nothing to refuse; adopting writes nothing (a changed backlog mode or a removed sink is applied to the
        outbox on the next turn, where a full disk is retried rather than half-applying the reload)."""
        old = self.config

        def adopt() -> None:
            self.config = config
            self.retired = config.defender is None
            self.leftovers = self.retired
            self.refold = not self.retired and config.delivery.backlog is not old.delivery.backlog

        return adopt

    # -- the wire ---------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        self._end_leftovers()
        if self.refold:
            change = self.backlog.fold_pending(self.config.delivery.backlog)
            self.refold = False
            self.resend.forget_all(change.removed)
            if change.stored is not None:
                self.resend.schedule(change.stored.report_id, now)
        if self.ctx.session.ready and not self.retired:
            self.reports.publish_due(now)

    def next_deadline(self) -> Optional[float]:
        return self.resend.next_deadline() if self.ctx.session.ready else None

    def handle(self, event: object, now: float) -> bool:
        if isinstance(event, ev.Message):
            self.reports.on_message(event)
            return True
        if isinstance(event, ev.PublishDone) and isinstance(event.tag, int):
            if event.ok:
                self.ctx.outbox.mark_delivered(event.tag)
            else:
                self.ctx.log.debug("Publish of report %d did not complete: %s", event.tag, event.error)
            return True
        if isinstance(event, ev.Connected):  # replies sent while we were away are lost
            self.resend.schedule_all((p.report_id for p in self.ctx.outbox.pending() if p.attempts > 0), now)
        elif isinstance(event, ev.Subscribed) and event.ok:  # a report held for its reply topics goes now
            ids = self.ctx.outbox.pending_ids()
            newest = self.ctx.outbox.get(ids[-1]) if ids else None
            if newest is not None and newest.attempts == 0:
                self.resend.schedule(newest.report_id, now)
        return False

    def wanted_formats(self) -> Set[PayloadFormat]:
        """The formats whose reply topics are needed: the config's (unless retired) and every pending report's."""
        ours = set() if self.retired else {self.config.report.format}
        return ours | {p.format for p in self.ctx.outbox.pending()}

    # -- what it shows ------------------------------------------------------------------------

    def pending(self) -> int:
        return len(self.resend)

    def health(self, counters: Mapping[str, int]) -> Tuple[SinkHealth, ...]:
        if self.retired:
            return ()
        counts = defender_counts(counters)
        return (SinkHealth(self.name, "defender", counts[MessageOutcome.DELIVERED], counts[MessageOutcome.FAILED],
                           counts[MessageOutcome.DROPPED], len(self.resend)),)

    @property
    def last_accepted_at(self) -> Optional[float]:
        return self.reports.last_accepted_at
