"""The one loop that owns timing and the round's transaction; the consumers own everything else.

Everything else talks to it through ``Service.events``: awscrt callbacks, collector workers, the exec
hook and signal handlers put events there and return. The loop sleeps until the next event or the
next deadline (a round due or due to end, a consumer's publish or timeout, the session's, the
watchdog) and at no other time. Nothing it waits for can hold it: a round starts the due collectors
and the loop goes on (:meth:`SampleSource.begin`); the round ends when every collector returned or
its deadline passed.

A round: samples -> the report (:class:`agent.report.builder.ReportBuilder`) -> the checked round
-> every consumer's writes in one outbox transaction (:mod:`agent.consumers`) -> after the
commit, each consumer's next step. A new config (SIGHUP, or the shadow's desired state:
:mod:`agent.remote`) is all or nothing: everything it needs is made first (:mod:`agent.reconfigure`);
only then is anything swapped (:meth:`Service._apply`).

Seams for tests: the link (``link_factory``; :mod:`devkit.fake_link`), time (``clock``; :class:`devkit.clock.FakeClock`)
and the sample source (``source_factory``). ``run()`` is ``open()``, ``run_once()`` until stopped, ``close()``.
"""

from __future__ import annotations

import itertools
import logging
import queue
import random
from typing import Callable, Optional

from agent import events as ev
from agent.clock import Clock, SystemClock
from agent.config.model import Config, HealthMetrics
from agent.consumers.base import Context, Round
from agent.consumers.registry import ConsumerSet
from agent.errors import ReportError
from agent.guard import Guard, Stage
from agent.heartbeat import Heartbeat, meta_values, status_line
from agent.mqtt.link import Links
from agent.mqtt.session import LINK_EVENTS, LinkFactory, Session
from agent.notify import Notifier
from agent.outbox.state import StateDir
from agent.reconfigure import make_change, refusal
from agent.reload import Section
from agent.remote.engine import Make, Remote
from agent.report.builder import ReportBuilder
from agent.report.cloud import checked_round
from agent.report.encode import first_violations
from agent.sampling import SampleSource, health_samples, not_due_cloud_names, rounds_of
from agent.sinks.health import collector_health

SourceFactory = Callable[[Config], SampleSource]
MAX_EVENTS_PER_TURN = 1000  # then the deadlines get their turn, even under a flood of events


class Service:
    def __init__(self, config: Config, source_factory: SourceFactory, logger: logging.Logger,
                 reload_config: Optional[Callable[[], Config]] = None, link_factory: Optional[LinkFactory] = None,
                 notifier: Optional[Notifier] = None, rng: Optional[random.Random] = None,
                 max_reports: Optional[int] = None, clock: Optional[Clock] = None, remote: Optional[Remote] = None
                 ) -> None:
        """``reload_config`` loads the config again on SIGHUP, with the checks of a start (it raises
        :class:`AgentError` to refuse it); ``clock`` defaults to the real one; ``remote`` applies the shadow's
        desired state (``config`` already has its stored keys)."""
        self.remote = remote
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
        self.session = Session(config, self.events, logger, link_factory or Links(), self.clock)
        self.heartbeat = Heartbeat(self.notifier)
        self.guard = Guard(logger, config.state_dir, self.clock.monotonic)
        self.last_report_id: Optional[int] = None
        self.round_ends: Optional[float] = None  # a round's collectors are running until then (at the latest)

    # -- set-up and tear-down -------------------------------------------------------------

    def open(self) -> None:
        """Open the outbox, build the consumers and the collectors, start connecting; then tell systemd."""
        cfg = self.config
        self.state = StateDir(cfg.state_dir, self.log, self.clock.wall)
        self.state.configure(cfg.delivery, self.clock.wall())
        self.builder = ReportBuilder(cfg, self.log.getChild("report"))
        ctx = Context(self.state.outbox, self.state.admission, self.session, self.clock, self.events,
                      self.log.getChild("sinks"), self._save_meta)
        self.consumers = ConsumerSet(ctx, cfg, self.state.ids, self.rng)
        self.source = rounds_of(self.source_factory(cfg), self.clock.monotonic)
        self.consumers.open()
        if self.remote is not None:  # the shadow reports config.desired_version from its first update
            self.consumers.remote_outcome(self.remote.outcome)
        now = self.clock.monotonic()
        self.next_report = now + self.rng.uniform(0, min(cfg.report.jitter, cfg.report.interval))
        self.heartbeat.start(now)
        self.session.start(cfg)
        self.notifier.ready(self._status_line())
        self.log.info("Running: thing %r, report every %.0f s (+ up to %.0f s jitter), backlog %s, sinks %s",
                      cfg.thing_name, cfg.report.interval, cfg.report.jitter, cfg.delivery.backlog,
                      ", ".join(f"{s.name} ({s.type})" if s.name != s.type.value else s.name for s in cfg.sinks))

    def _drain_acks(self) -> None:
        """PUBACKs and replies that came before the disconnect still count: else their messages and reports
        would go out a second time after the restart (at least once, but needlessly twice)."""
        for event in ev.drain(self.events, MAX_EVENTS_PER_TURN):
            if isinstance(event, (ev.PublishDone, ev.Message, ev.HookDone)):
                self._handle(event)

    def close(self) -> None:
        """Disconnect (bounded wait), close the collectors (a hung one is not waited for) and the outbox."""
        self.notifier.stopping()
        if self.config.mqtt is not None:
            self.log.info("Stopping: disconnecting from %s", self.session.link_state.address)
        else:
            self.log.info("Stopping")
        if not self.session.stop(timeout=2.0):
            self.log.warning("The MQTT client did not confirm the disconnect within 2 s")
        self.guard.run(Stage.EVENT, self._drain_acks)
        self.guard.run(Stage.CLOSE, self.source.close)
        self.consumers.close()
        self.guard.run(Stage.SAVE_STATUS, self._save_meta)
        self.state.close()
        self.log.info("Stopped (%d report(s) still pending in the outbox)", self.consumers.pending_reports())

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
        first = self.clock.wait(self.events, wait)
        if first is not None:  # at most MAX_EVENTS_PER_TURN: the rest stay queued for the next turn
            for event in itertools.chain([first], ev.drain(self.events, MAX_EVENTS_PER_TURN - 1)):
                self.guard.run(Stage.EVENT, self._handle, event)
        if not self.stopping:
            self._tick(self.clock.monotonic())

    def _next_deadline(self) -> float:
        """The earliest time :meth:`_tick` has work: the one bound on the loop's sleep (the heartbeat's is
        always set, at most an hour away without a watchdog, so the wait is finite)."""
        times = [self.heartbeat.next_at, self.consumers.next_deadline(), self.session.next_deadline(self.config)]
        if self.round_ends is not None:
            times.append(self.round_ends)
        elif not self._done_reporting():  # else next_report stays in the past and the loop would spin
            times.append(self.next_report)
        return min(t for t in times if t is not None)

    def _tick(self, now: float) -> None:
        if self.round_ends is None and now >= self.next_report and not self._done_reporting():
            # Scheduled before the round runs: a round that fails (disk full) must not be retried at once.
            self.next_report = now + self.config.report.interval + self.rng.uniform(0, self.config.report.jitter)
            self.round_ends = now
            self.guard.run(Stage.SAMPLE, self._begin_round)
        if self.round_ends is not None and (now >= self.round_ends or self.source.ready()):
            self.round_ends = None
            self.guard.run(Stage.STORE, self._report_round, now)
            # Never sooner than one interval after the round ended: two reports in a burst are what the
            # service's 5-minute throttle punishes.
            self.next_report = max(self.next_report, self.clock.monotonic() + self.config.report.interval)
        self.guard.run(Stage.SEND, self.consumers.tick, now)
        self.guard.run(Stage.CONNECT, self.session.tick, now, self.config, self.consumers.wanted_formats)
        self.guard.run(Stage.HEARTBEAT, lambda: self.heartbeat.beat(now, self._status_line()))
        if self._done_reporting() and self.round_ends is None and not self.consumers.pending_reports():
            self.log.info("Built %d report(s) and none is pending; stopping as asked", self.reports_built)
            self.stopping = True

    def _done_reporting(self) -> bool:
        return self.max_reports is not None and self.reports_built >= self.max_reports

    # -- a round ----------------------------------------------------------------------------

    def _begin_round(self) -> None:
        """Start the due collectors; the round ends at their deadline or when the last one returns."""
        self.round_ends = self.source.begin(lambda: self.events.put(ev.CollectorsDone()))

    def _report_round(self, now: float) -> None:
        try:
            samples = list(self.source.finish())
        except Exception as exc:  # the source must not raise; if it does, the report goes without samples
            self.log.error("Sampling failed: %s: %s", type(exc).__name__, exc)
            samples = []
        report_id = self.state.next_id()
        wall = self.clock.wall()
        self.reports_built += 1
        collectors = collector_health(self.source.stats())
        if self.config.health_metrics is HealthMetrics.CUSTOM_METRICS:
            samples.extend(health_samples(collectors, self.consumers.pending_total(), self.consumers.since_accepted(wall)))
        try:
            encoded = self.builder.build(report_id, samples)
        except ReportError as exc:
            self.log.error("Report %d could not be built: %s", report_id, first_violations(exc.violations))
            self.state.unbuilt(report_id, f"build failed: {exc}", wall)
            return
        checked = checked_round(self.config.thing_name, encoded.document, report_id, int(wall * 1000),
                                self.config.custom_metric_types)
        rnd = Round(report_id, wall, now, tuple(samples), encoded, checked, not_due_cloud_names(self.source),
                    collectors, self.consumers.health_of)
        with self.state.transaction():  # the id, the report, the messages, the states and the meta: one commit
            steps = self.consumers.store(rnd)
            self._save_meta(last_report_id=report_id, last_report_at=wall)
        for step in steps:  # only once committed: a failed commit leaves memory as the disk is
            self.guard.run(Stage.STORE, step)
        self.state.after_commit()
        self.log.info("Built report %d (%d bytes, %d sample(s))", report_id, len(encoded.payload), len(samples))

    # -- events ---------------------------------------------------------------------------

    def _handle(self, event: object) -> None:
        now = self.clock.monotonic()
        if isinstance(event, ev.SignalEvent):
            if event.name == ev.Signal.HUP:
                self._reload()
            else:
                self.log.info("Received SIG%s", event.name)
                self.stopping = True
            return
        if isinstance(event, ev.CollectorsDone):
            return  # the turn's tick ends the round
        if isinstance(event, ev.DesiredState):
            if self.remote is not None:
                self.consumers.remote_outcome(self.remote.desired(event, self._apply))
            return
        if isinstance(event, LINK_EVENTS):
            self.session.handle(event, now, self.config.thing_name, self.consumers.wanted_formats)
        self.consumers.handle(event, now)

    # -- reload -----------------------------------------------------------------------------

    def _reload(self) -> None:
        """SIGHUP: agent.yaml again, with its remote keys; READY=1 in every outcome."""
        if self.reload_config is None:
            self.log.warning("Received SIGHUP but this run has no config file to reload")
            return
        self.notifier.reloading()
        load, remote = self.reload_config, self.remote
        if self._apply(lambda: remote.rebase(load()) if remote else (load(), lambda: None), "Reload") is None and remote:
            self.consumers.remote_outcome(remote.outcome)
        self.notifier.ready(self._status_line())

    def _apply(self, make: Make, label: Optional[str]) -> Optional[str]:
        """All or nothing: everything new is made first, then swapped (and ``make``'s step run). None once
        applied, else why not (logged here when ``label`` names the change, else by the caller)."""
        try:
            change = make_change(self.config, make, self.consumers, self.session, self.source_factory,
                                 self.clock.monotonic, self.log, lambda s: self.guard.run(Stage.CLOSE, s.close))
        except Exception as exc:  # AgentError, or whatever a plugin's constructor raised
            if label:
                self.log.error("%s refused, keeping the running configuration: %s", label, refusal(exc))
            return refusal(exc)
        old, new, reload = self.config, change.config, change.reload
        if reload.refused_state_dir is not None:
            self.log.warning("state_dir changed to %s; that takes a restart (keeping %s)",
                             reload.refused_state_dir, old.state_dir)
        self.config, self.builder = new, change.builder
        change.adopt()
        self.guard.run(Stage.STORE, self.state.configure, new.delivery, self.clock.wall())
        if change.reconnects:
            self.session.switch(new, change.link)
        if change.source is not None:
            self.guard.run(Stage.CLOSE, self.source.close)
            self.source = change.source
            if self.round_ends is not None:  # the old collectors' round is abandoned; the new ones start now
                self.round_ends, self.next_report = None, self.clock.monotonic()
        if reload.touches(Section.REPORT):
            self.next_report = min(self.next_report, self.clock.monotonic() + new.report.interval)
        if new.log_level is not old.log_level:
            self.log.setLevel(new.log_level.value.upper())
        change.adopted()
        if label:
            self.log.info("Reloaded configuration from %s (changed: %s)", new.source, reload.changed_names())
        return None

    # -- status ---------------------------------------------------------------------------

    def _status_line(self) -> str:
        return status_line(self.last_report_id, self.consumers.pending_reports(), self.session.link_state.phase)

    def _save_meta(self, **extra: object) -> None:
        last = extra.get("last_report_id")
        if isinstance(last, int):
            self.last_report_id = last
        self.state.save_meta(meta_values(self.source.stats(), self.session.link_state.phase, self.clock.wall(),
                                         **self.consumers.status(), **extra))
