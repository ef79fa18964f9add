"""The defender sink's reports on the wire: which pending report goes out when, and what each reply settles.

The defender consumer (:mod:`agent.consumers.defender.consumer`) calls :meth:`ReportDelivery.publish_due`
when the session is ready and hands it every reply message; the consumer stores the round's report
(:mod:`agent.outbox.backlog`) and keeps the resend clock's other users (restart, reconnect, reload).

Only the newest pending report is ever (re)sent: the service wants report ids to only go up, so
an older report that got no reply ends ``unanswered`` once a newer one is published, and a report
with no reply to ``delivery.max_attempts`` publishes ends ``unanswered`` too. After
:data:`UNANSWERED_HINT_AFTER` unanswered reports in a row the journal says once what to check.
"""

from __future__ import annotations

import logging
from typing import Callable, Optional, Set

from agent import events as ev
from agent.catalog import PayloadFormat
from agent.clock import Clock
from agent.config.model import Config
from agent.consumers.defender.resend import ResendClock
from agent.mqtt.replies import Reply, Unusable, parse_reply
from agent.mqtt.session import Session
from agent.mqtt.topics import reply_topic, report_topic
from agent.outbox.store import Outbox, Pending, ReportOutcome

UNANSWERED_HINT_AFTER = 3  # unanswered reports in a row before the journal says what to check


class ReportDelivery:
    def __init__(self, config: Callable[[], Config], outbox: Outbox, session: Session, resend: ResendClock,
                 clock: Clock, logger: logging.Logger, save_meta: Callable[..., None],
                 wanted_formats: Callable[[], Set[PayloadFormat]]) -> None:
        """``config`` returns the running config (it changes on reload); ``save_meta`` writes the status
        meta (inside the caller's transaction); ``wanted_formats`` names the formats whose replies are needed."""
        self.config = config
        self.outbox = outbox
        self.session = session
        self.resend = resend
        self.clock = clock
        self.log = logger
        self.save_meta = save_meta
        self.wanted_formats = wanted_formats
        self.unanswered_streak = 0  # reports in a row that ended without a reply
        self.last_accepted_at: Optional[float] = None  # wall time of the last accepted report

    def publish_due(self, now: float) -> None:
        """Publish the newest pending report when it is due; only it is ever (re)sent.

        The service wants report ids to only go up: once a newer report is published, an older one
        that got no reply ends ``unanswered`` instead of going out again after it. A report that got no
        reply to ``max_attempts`` publishes ends ``unanswered`` too.
        """
        delivery = self.config().delivery
        ids = self.outbox.pending_ids()
        gone = set(self.resend.due_at) - set(ids)  # ended elsewhere (the outbox's bound dropped them)
        if gone:
            self.resend.forget_all(gone)
        if not ids:
            return
        rid, older = ids[-1], ids[:-1]
        self.resend.forget_all(older)  # never sent again: no deadline of theirs
        if rid not in self.resend:  # e.g. after a restart: every pending report gets a due time
            self.resend.schedule(rid, now)
        newest = self.outbox.get(rid) if rid in self.resend.due(now) else None
        if newest is None:
            return
        if newest.attempts >= delivery.max_attempts:
            self.resend.schedule(rid, now + delivery.reply_timeout)  # should ending it fail (disk full): later
            self.unanswered(newest, f"no reply to {newest.attempts} publish(es) (delivery.max_attempts)")
            return
        if newest.format not in self.session.subscribed_formats:
            # Due again when its reply topics are subscribed (the SUBACK's event makes it due at once) or
            # after a reply timeout: never on every turn while the SUBACK is outstanding.
            self.resend.schedule(rid, now + delivery.reply_timeout)
            self.session.subscribe(self.config().thing_name, self.wanted_formats())
            return
        attempt = newest.attempts + 1
        wait = self.resend.sent(rid, now, attempt, delivery)  # first: a publish that raises is retried after it
        self.session.publish(report_topic(self.config().thing_name, newest.format), newest.payload, rid)
        wall = self.clock.wall()
        self.outbox.record_attempt(rid, wall, wall + wait)
        if attempt == 1:
            self.log.info("Published report %d (%d bytes)", rid, len(newest.payload))
        else:
            self.log.info("Published report %d again (attempt %d of %d; no reply yet); next try in %.0f s",
                          rid, attempt, delivery.max_attempts, wait)
        for old in filter(None, map(self.outbox.get, older)):  # an older id must not follow a newer one
            self.unanswered(old, f"no reply before the newer report {rid} was published")

    def unanswered(self, report: Pending, why: str) -> None:
        """End a report that got no reply; after a few in a row, say once what to check."""
        outcome = ReportOutcome.UNANSWERED if report.attempts > 0 else ReportOutcome.SUPERSEDED
        with self.outbox.transaction():
            if not self.outbox.finish(report.report_id, outcome, None, why, self.clock.wall()):
                return
            self.save_meta(last_outcome=outcome, last_outcome_id=report.report_id)
        self.resend.forget(report.report_id)
        if outcome is ReportOutcome.SUPERSEDED:
            self.log.info("Report %d superseded: %s", report.report_id, why)
            return
        self.unanswered_streak += 1
        self.log.warning("Report %d unanswered after %d publish(es): %s", report.report_id, report.attempts, why)
        if self.unanswered_streak == UNANSWERED_HINT_AFTER:
            thing, fmt = self.config().thing_name, report.format
            self.log.error(
                "No reply to the last %d reports although they were published: check that the device policy "
                "allows iot:Subscribe on the topic filters and iot:Receive on the topics "
                "%s and %s, and iot:Publish on %s (docs/AWS-SETUP.md, \"The device policy\"), and that "
                "this AWS account has Device Defender Detect: AWS closed it to new customers on 2026-08-31 and "
                "a new account's reports get no reply (docs/WITHOUT-DETECT.md: the topic and textfile sinks need "
                "no Detect); logged once until a reply arrives",
                UNANSWERED_HINT_AFTER, reply_topic(thing, fmt, "accepted"), reply_topic(thing, fmt, "rejected"),
                report_topic(thing, fmt))

    def on_message(self, message: ev.Message) -> None:
        reply = parse_reply(message.topic, message.payload, self.config().thing_name)
        if isinstance(reply, Unusable):
            self.session.link_state.limited_warning(
                f"Ignored a message on {message.topic[:200]!r}: {reply.reason}", self.clock.monotonic())
            return
        self.settle(reply)

    def settle(self, reply: Reply) -> None:
        outcome = ReportOutcome.ACCEPTED if reply.accepted else ReportOutcome.REJECTED
        rid, unnamed = reply.report_id, reply.report_id is None
        if rid is None:  # the troubleshooting guide's rejected reply names no report: give it to the one awaiting
            awaiting = [p.report_id for p in self.outbox.pending() if p.attempts > 0]
            if len(awaiting) != 1:
                self.session.link_state.limited_warning(
                    f"Ignored a {outcome} reply that names no report id ({len(awaiting)} report(s) await a reply, "
                    f"so it is ambiguous): {reply.error_code!r}: {reply.error_message!r}", self.clock.monotonic())
                return
            rid = awaiting[0]
        with self.outbox.transaction():  # the outcome and the status meta: one commit, one fsync
            finished = self.outbox.finish(rid, outcome, reply.error_code, reply.error_message, self.clock.wall())
            if finished:
                accepted = {"last_accepted_at": self.clock.wall()} if reply.accepted else {}
                self.save_meta(last_outcome=outcome, last_outcome_id=rid, **accepted)
        if finished and reply.accepted:
            self.last_accepted_at = self.clock.wall()
        if finished:  # only once committed: a failed commit (disk full) leaves the report pending, and resent
            self.resend.forget(rid)
            self.unanswered_streak = 0
            named = " (the reply named no report id; it is the one report awaiting a reply)" if unnamed else ""
            if reply.accepted:
                self.log.info("Report %d accepted%s", rid, named)
            else:
                self.log.warning("Report %d rejected by the service: %r: %r%s (not resent; kept in the ledger)",
                                 rid, reply.error_code, reply.error_message, named)
            return
        earlier = self.outbox.outcome_of(rid)
        if earlier is None:
            self.session.link_state.limited_warning(f"Ignored a reply for unknown report id {rid}",
                                                    self.clock.monotonic())
        else:
            self.log.debug("Late or repeated %s reply for report %d (already %s)", outcome, rid, earlier)
