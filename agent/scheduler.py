"""The one loop that owns timing and state: sample, build, store, publish, resend, match replies.

Everything else only talks to it through ``Service.events`` (a ``queue.SimpleQueue``):
awscrt callbacks and signal handlers put events there and return. The loop sleeps
until the next event or the next deadline (report due, resend or reply timeout due, watchdog,
the session's connect warning, restart and resubscribe) and at no other time: there is no
periodic wake-up, so every timer must be one of the deadlines in :meth:`Service._next_deadline`.
A signal is handled at once all the same: its handler (:func:`agent.commands.run.serve`) puts an
event on the queue, and ``SimpleQueue.get(timeout=...)`` runs signal handlers when interrupted.

Helpers, one job each: :mod:`agent.delivery.session` (MQTT link, connection, reply
subscriptions), :mod:`agent.delivery.resend` (when to publish again), :mod:`agent.reload`
(SIGHUP), :mod:`agent.heartbeat` (watchdog, STATUS= and the status meta).

Seams for tests: the MQTT link (``link_factory``; :mod:`agent.delivery.fakelink` ships a
fake one) and time (``clock``; :class:`agent.clock.FakeClock`). ``run()`` is ``open()``,
``run_once()`` until stopped, then ``close()``; a test calls those itself for a bounded run.
"""

from __future__ import annotations

import enum
import logging
import queue
import random
import sqlite3
from typing import Any, Callable, Dict, Optional, Set, Tuple

from agent.clock import Clock, SystemClock
from agent.config.model import Config, HealthMetrics
from agent.delivery import events as ev
from agent.delivery.backlog import Backlog
from agent.delivery.ids import OutboxIds
from agent.delivery.mqtt import Link, make_link
from agent.delivery.outbox import Outbox, Pending
from agent.delivery.reports import ReportDelivery
from agent.delivery.resend import ResendClock
from agent.delivery.session import LINK_EVENTS, LinkFactory, Session
from agent.delivery.sinks import SinkSet, described
from agent.delivery.violations import Violations, check_exec
from agent.errors import AgentError, ReportError, StateDirError
from agent.heartbeat import Heartbeat, meta_values, status_line
from agent.notify import Notifier
from agent.reload import Section, compare
from agent.report.builder import ReportBuilder
from agent.report.cloud import checked_round
from agent.report.encode import first_violations
from agent.sampling import SampleSource, health_samples, network_stats, not_due_cloud_names
from agent.sinks.health import Health, collector_health

SourceFactory = Callable[[Config], SampleSource]
MAX_EVENTS_PER_TURN = 1000  # then the deadlines get their turn, even under a flood of events
UNEXPECTED_REPEAT = 600.0  # seconds: an unexpected error of one kind at one stage is logged at most this often
# What a full or failing state_dir raises: SQLite ("database or disk is full", "disk I/O error") and
# plain file writes (ENOSPC, EDQUOT, EIO). The loop survives them and tries again on the next round.
STORAGE_ERRORS = (sqlite3.OperationalError, OSError)


class Stage(enum.Enum):
    """What the loop was doing when something failed; the value is named in the log line."""

    STORE = "storing a report"
    SEND = "sending reports"
    EVENT = "handling an event"
    SAVE_STATUS = "saving the status"
    CONNECT = "keeping the connection"
    HEARTBEAT = "telling systemd how it goes"

    @property
    def writes_state(self) -> bool:
        """Whether an OSError here can only mean state_dir (the connection and the notify socket are not it)."""
        return self not in (Stage.CONNECT, Stage.HEARTBEAT)


def default_link(config: Config, events: queue.SimpleQueue[object], logger: logging.Logger) -> Link:
    assert config.mqtt is not None, "no link without mqtt (the session makes none)"
    return make_link(config.mqtt, config.client_id, events, logger, min(60.0, config.delivery.retry_max_delay),
                     config.source)


class Service:
    def __init__(
        self,
        config: Config,
        source_factory: SourceFactory,
        logger: logging.Logger,
        reload_config: Optional[Callable[[], Config]] = None,
        link_factory: LinkFactory = default_link,
        notifier: Optional[Notifier] = None,
        rng: Optional[random.Random] = None,
        max_reports: Optional[int] = None,
        clock: Optional[Clock] = None,
    ) -> None:
        """``reload_config`` loads the config again on SIGHUP, with the checks of a start (it raises
        :class:`AgentError` to refuse it); ``clock`` defaults to the real one."""
        self.config = config
        self.source_factory = source_factory
        self.log = logger
        self.reload_config = reload_config
        self.clock: Clock = clock or SystemClock()
        self.notifier = notifier or Notifier({})
        self.rng = rng or random.Random()
        self.max_reports = max_reports  # stop after this many reports settle (demo)
        self.events: queue.SimpleQueue[object] = queue.SimpleQueue()
        self.stopping = False
        self.reports_built = 0
        self.session = Session(config, self.events, logger, link_factory, self.clock)
        self.resend = ResendClock(self.rng)
        self.heartbeat = Heartbeat(self.notifier)
        self.last_report_id: Optional[int] = None
        self.storage_failures = 0  # consecutive failed writes to state_dir (disk full), logged once per burst
        self.failing: Dict[Tuple[Stage, str], Tuple[float, float, int]] = {}  # first seen, last logged, unlogged

    # -- set-up and tear-down -------------------------------------------------------------

    def open(self) -> None:
        """Open the outbox, build the sample source, start connecting; then tell systemd it is ready."""
        cfg = self.config
        try:
            self.outbox = Outbox.open(cfg.state_dir, self.log)
        except STORAGE_ERRORS as exc:
            raise StateDirError(f"cannot open the outbox in {cfg.state_dir}: {exc}") from exc
        self.ids = OutboxIds(cfg.state_dir, self.outbox, clock=self.clock.wall)
        self.backlog = Backlog(self.outbox, self.ids, cfg.state_dir, self.log, clock=self.clock.wall)
        self.builder = ReportBuilder(cfg, self.log.getChild("report"))
        self.sinks = SinkSet(cfg, self.outbox, self.log.getChild("sinks"))
        check_exec(cfg)
        self.violations = Violations(cfg, self.outbox, self.sinks, self.events, self.log.getChild("behaviors"))
        self.source = self.source_factory(cfg)
        accepted_at = self.outbox.meta().get("last_accepted_at")
        self.reports = ReportDelivery(lambda: self.config, self.outbox, self.session, self.resend, self.clock,
                                      self.log, self._save_meta, self._wanted_formats)
        self.reports.last_accepted_at = float(accepted_at) if isinstance(accepted_at, (int, float)) else None
        self._drop_reports_without_defender()
        self.backlog.fold_pending(cfg.delivery.backlog)
        now = self.clock.monotonic()
        self.resend.schedule_all((p.report_id for p in self.outbox.pending()), now)
        if self.resend:
            self.log.info("Outbox holds %d pending report(s) from before; sending them when connected",
                          len(self.resend))
        self.next_report = now + self.rng.uniform(0, min(cfg.report.jitter, cfg.report.interval))
        self.heartbeat.start(now)
        self.session.start(cfg)
        self.notifier.ready(self._status_line())
        self.log.info("Running: thing %r, report every %.0f s (+ up to %.0f s jitter), backlog %s, sinks %s",
                      cfg.thing_name, cfg.report.interval, cfg.report.jitter, cfg.delivery.backlog,
                      ", ".join(f"{s.name} ({s.type})" if s.name != s.type.value else s.name for s in cfg.sinks))

    def _drop_reports_without_defender(self) -> None:
        """Without a defender sink no report is sent: pending ones (from a config that had one) end ``dropped``."""
        if self.config.defender is not None:
            return
        ids = self.outbox.pending_ids()
        if ids:
            self.outbox.drop(ids, "the config has no defender sink", self.clock.wall())
            self.resend.forget_all(ids)
            self.log.warning("Dropped %d pending report(s): the config has no defender sink any more", len(ids))

    def _drain_acks(self) -> None:
        """PUBACKs and replies that came before the disconnect still count: else their messages and reports
        would go out a second time after the restart (at least once, but needlessly twice)."""
        for _ in range(MAX_EVENTS_PER_TURN):
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                return
            if isinstance(event, (ev.PublishDone, ev.Message, ev.HookDone)):
                self._handle(event)

    def close(self) -> None:
        """Disconnect (bounded wait), close the source, save the status and close the outbox."""
        self.notifier.stopping()
        if self.config.mqtt is not None:
            self.log.info("Stopping: disconnecting from %s", self.session.link_state.address)
        else:
            self.log.info("Stopping")
        if not self.session.stop(timeout=2.0):
            self.log.warning("The MQTT client did not confirm the disconnect within 2 s")
        self._guarded(Stage.EVENT, self._drain_acks)
        self.source.close()
        self.violations.close()
        self._guarded(Stage.SAVE_STATUS, self._save_meta)
        self.outbox.close()
        self.log.info("Stopped (%d report(s) still pending in the outbox)", len(self.resend))

    # -- the loop -------------------------------------------------------------------------

    def run(self) -> int:
        self.open()
        try:
            while not self.stopping:
                self.run_once()
        finally:
            self.close()
        return 0

    def run_once(self) -> None:
        """One turn of the loop: wait for an event or the next deadline, handle the events, then the deadlines."""
        wait = max(0.0, self._next_deadline() - self.clock.monotonic())
        event = self.clock.wait(self.events, wait)
        handled = 0
        while event is not None:
            self._guarded(Stage.EVENT, self._handle, event)
            handled += 1
            if handled >= MAX_EVENTS_PER_TURN:  # the rest stay queued for the next turn
                break
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                event = None
        if not self.stopping:
            self._tick(self.clock.monotonic())

    def _next_deadline(self) -> float:
        """The earliest time :meth:`_tick` has work: the one bound on the loop's sleep.

        The heartbeat's is always set (at most an hour away without a watchdog), so the wait is finite.
        """
        deadline = self.heartbeat.next_at
        if not self._done_reporting():  # else next_report stays in the past and the loop would spin
            deadline = min(deadline, self.next_report)
        resend = self.resend.next_deadline()  # a resend, or a reply timeout (then max_attempts ends it)
        if self.session.ready and resend is not None:
            deadline = min(deadline, resend)
        messages = self.sinks.next_deadline()  # an ack timeout or a retry of a topic sink's message
        if self.session.connected and messages is not None:
            deadline = min(deadline, messages)
        session = self.session.next_deadline(self.config)
        if session is not None:
            deadline = min(deadline, session)
        return deadline

    def _tick(self, now: float) -> None:
        if now >= self.next_report and not self._done_reporting():
            # Scheduled before the round runs: a round that fails (disk full) must not be retried at once.
            # And never sooner than one interval after the round ended: a round that ran late (a slow
            # collector, a suspended machine) must not be followed by another at once, since two reports in
            # a burst are what the service's 5-minute throttle punishes.
            interval = self.config.report.interval
            self.next_report = now + interval + self.rng.uniform(0, self.config.report.jitter)
            self._guarded(Stage.STORE, self._report_round, now)
            self.next_report = max(self.next_report, self.clock.monotonic() + interval)
        if self.session.ready:
            self._guarded(Stage.SEND, self.reports.publish_due, now)
        if self.session.connected:
            self._guarded(Stage.SEND, self.sinks.publish_due, now, self.session.publish)
        self._guarded(Stage.CONNECT, self.session.tick, now, self.config, self._wanted_formats)
        self._guarded(Stage.HEARTBEAT, lambda: self.heartbeat.beat(now, self._status_line()))
        if self._done_reporting() and not self.resend:
            self.log.info("Built %d report(s) and none is pending; stopping as asked", self.reports_built)
            self.stopping = True

    def _guarded(self, stage: Stage, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn``; no error ends the loop. A storage error (state_dir full or failing) is logged once per
        burst; any other error (a library's, or a bug) at most every 10 minutes per stage and kind, with a count.

        Only a report stored again proves that writing works (the other stages may write nothing).
        """
        try:
            fn(*args)
        except STORAGE_ERRORS as exc:
            if not stage.writes_state:
                self._unexpected(stage, exc)
                return
            self.storage_failures += 1
            if self.storage_failures == 1:
                self.log.error("Cannot write to %s while %s: %s; the report(s) concerned stay pending or are "
                               "skipped, and writing is retried every round", self.config.state_dir, stage.value, exc)
            return
        except Exception as exc:  # awscrt, cbor2, json, SQLite's other errors, a bug: one line, then go on
            self._unexpected(stage, exc)
            return
        if self.storage_failures and stage is Stage.STORE:
            self.log.warning("Writing to %s works again (after %d failed write(s))", self.config.state_dir,
                             self.storage_failures)
            self.storage_failures = 0

    def _unexpected(self, stage: Stage, exc: Exception) -> None:
        """One journal line per stage and kind of error, at most every 10 minutes, with how often it recurred."""
        kind = f"{type(exc).__module__}.{type(exc).__name__}".replace("builtins.", "")
        now = self.clock.monotonic()
        first, last, count = self.failing.get((stage, kind), (now, -UNEXPECTED_REPEAT, 0))
        if now - last >= UNEXPECTED_REPEAT:
            again = f" ({count} more time(s) since {now - first:.0f} s ago)" if count else ""
            self.log.error("Unexpected error while %s: %s: %s%s; the loop goes on (repeated at most every "
                           "%.0f min; log_level: debug shows the traceback)", stage.value, kind, exc, again,
                           UNEXPECTED_REPEAT / 60)
            self.failing[(stage, kind)] = (first, now, 0)
        else:
            self.failing[(stage, kind)] = (first, last, count + 1)
        self.log.debug("Traceback of the error while %s", stage.value, exc_info=True)

    def _done_reporting(self) -> bool:
        return self.max_reports is not None and self.reports_built >= self.max_reports

    # -- reports ----------------------------------------------------------------------------

    def _report_round(self, now: float) -> None:
        try:
            samples = list(self.source.sample())
        except Exception as exc:  # the source must not raise; if it does, the report goes without samples
            self.log.error("Sampling failed: %s: %s", type(exc).__name__, exc)
            samples = []
        report_id = self.ids.next()
        wall = self.clock.wall()
        self.reports_built += 1
        collectors = collector_health(self.source.stats())
        if self.config.health_metrics is HealthMetrics.CUSTOM_METRICS:
            samples.extend(health_samples(collectors, self._pending_total(), self._since_accepted(wall)))
        try:
            encoded = self.builder.build(report_id, samples)
        except ReportError as exc:
            self.log.error("Report %d could not be built: %s", report_id, first_violations(exc.violations))
            self.outbox.record_unsent(report_id, "dropped", f"build failed: {exc}"[:500], wall)
            return
        checked = checked_round(self.config.thing_name, encoded.document, report_id, int(wall * 1000),
                                self.config.custom_metric_types)
        defender = self.config.defender is not None
        with self.outbox.transaction():  # the id, the report, the messages and the status meta: one commit
            if defender:
                pending = Pending.new(report_id, encoded.format.value, encoded.payload, wall, network_stats(samples))
                change = self.backlog.store(pending, self.config.delivery)
            self.sinks.store_round(checked, encoded.payload, wall)
            to_exec = self.violations.round(checked, wall, not_due_cloud_names(self.source))
            self._save_meta(last_report_id=report_id, last_report_at=wall)
        self.violations.after_commit(to_exec)
        if defender:
            self.resend.forget_all(change.removed)
            if change.stored is not None:
                self.resend.schedule(change.stored.report_id, now)
        self.sinks.write_textfiles(checked, lambda: Health(collectors, self._pending_total(),
                                                           self._since_accepted(wall), self.sinks.health(len(self.resend))))
        self.log.info("Built report %d (%d bytes, %d sample(s))%s", report_id, len(encoded.payload), len(samples),
                      f"; it {change.note}" if defender and change.note else "")

    def _pending_total(self) -> int:
        return self.outbox.pending_count() + self.sinks.messages.pending_count()

    def _since_accepted(self, wall: float) -> Optional[float]:
        accepted = self.reports.last_accepted_at
        return None if accepted is None else max(0.0, wall - accepted)

    # -- events ---------------------------------------------------------------------------

    def _handle(self, event: object) -> None:
        now = self.clock.monotonic()
        if isinstance(event, ev.Message):
            self.reports.on_message(event)
        elif isinstance(event, ev.PublishDone):
            if isinstance(event.tag, ev.MessageRef):
                self.sinks.done(event, now)
            elif event.ok:
                self.outbox.mark_delivered(event.tag)
            else:
                self.log.debug("Publish of report %d did not complete: %s", event.tag, event.error)
        elif isinstance(event, LINK_EVENTS):
            self.session.handle(event, now, self.config.thing_name, self._wanted_formats)
            if isinstance(event, ev.Connected):  # replies sent while we were away are lost
                self.resend.schedule_all((p.report_id for p in self.outbox.pending() if p.attempts > 0), now)
                self.sinks.connected()
            elif isinstance(event, ev.Disconnected):
                self.sinks.disconnected(now)
            elif isinstance(event, ev.Subscribed) and event.ok:  # a report held for its reply topics goes now
                ids = self.outbox.pending_ids()
                newest = self.outbox.get(ids[-1]) if ids else None
                if newest is not None and newest.attempts == 0:
                    self.resend.schedule(newest.report_id, now)
        elif isinstance(event, ev.HookDone):
            self.violations.hook_done(event)
        elif isinstance(event, ev.SignalEvent):
            if event.name == ev.Signal.HUP:
                self._reload()
            else:
                self.log.info("Received SIG%s", event.name)
                self.stopping = True

    def _wanted_formats(self) -> Set[str]:
        """The formats whose reply topics are needed: the config's (with a defender sink) and every pending report's."""
        ours = {self.config.report.format.value} if self.config.defender is not None else set()
        return ours | {p.format for p in self.outbox.pending()}

    # -- reload -----------------------------------------------------------------------------

    def _reload(self) -> None:
        if self.reload_config is None:
            self.log.warning("Received SIGHUP but this run has no config file to reload")
            return
        self.notifier.reloading()
        try:
            reload = compare(self.config, self.reload_config())
            check_exec(reload.config)
            if reload.touches(Section.MQTT, Section.THING_NAME):
                self.session.restart(reload.config)  # first: new TLS files that awscrt refuses keep the old config
        except AgentError as exc:
            self.log.error("Reload refused, keeping the running configuration: %s", str(exc).replace("\n", "; "))
            self.notifier.ready(self._status_line())
            return
        old, new = self.config, reload.config
        if reload.refused_state_dir is not None:
            self.log.warning("state_dir changed to %s; that takes a restart (keeping %s)",
                             reload.refused_state_dir, old.state_dir)
        self.config = new
        self.builder = ReportBuilder(new, self.log.getChild("report"))
        self.sinks.configure(new)
        self.violations.configure(new)
        self._drop_reports_without_defender()
        # The collectors are built for one sampling interval (network_stats' max_span is 1.5 of it), so a new
        # interval rebuilds them too: else every delta of a longer interval is refused until a restart.
        if (reload.touches(Section.COLLECTORS, Section.CUSTOM_METRICS)
                or new.report.interval != old.report.interval):
            self.source.close()
            self.source = self.source_factory(new)
        if reload.touches(Section.REPORT):
            self.next_report = min(self.next_report, self.clock.monotonic() + new.report.interval)
        if new.delivery.backlog is not old.delivery.backlog:
            change = self.backlog.fold_pending(new.delivery.backlog)
            self.resend.forget_all(change.removed)
            if change.stored is not None:
                self.resend.schedule(change.stored.report_id, self.clock.monotonic())
        self.log.info("Reloaded configuration from %s (changed: %s)", new.source, reload.changed_names())
        self.notifier.ready(self._status_line())

    # -- status ---------------------------------------------------------------------------

    def _status_line(self) -> str:
        return status_line(self.last_report_id, len(self.resend), self.session.link_state.phase)

    def _save_meta(self, **extra: object) -> None:
        last = extra.get("last_report_id")
        if isinstance(last, int):
            self.last_report_id = last
        self.outbox.set_meta(meta_values(self.source.stats(), self.session.link_state.phase, self.clock.wall(),
                                         sinks=described(self.config.sinks, self.config.thing_name),
                                         violations=self.violations.status(), **extra))

