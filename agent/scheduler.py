"""The one loop that owns timing and state: sample, build, store, publish, resend, match replies.

Everything else only talks to it through ``Service.events`` (a ``queue.SimpleQueue``):
awscrt callbacks and signal handlers put events there and return. The loop wakes
for the next event or the next deadline (report due, resend due, watchdog).
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import random
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Set

from agent.collectors.base import Sample
from agent.config.model import Config
from agent.delivery import events as ev
from agent.delivery.backlog import Backlog
from agent.delivery.connection import Connection
from agent.delivery.ids import ReportIds
from agent.delivery.mqtt import Link, make_link
from agent.delivery.outbox import Outbox, Pending
from agent.delivery.replies import Reply, Unusable, parse_reply
from agent.delivery.topics import reply_topic, report_topic
from agent.errors import AgentError, ConfigError, ReportError
from agent.notify import Notifier
from agent.report.builder import ReportBuilder
from agent.report.encode import first_violations
from agent.report.model import NetworkStats
from agent.sampling import SampleSource
from agent.security import audit_files

LinkFactory = Callable[[Config, "queue.SimpleQueue[object]", logging.Logger], Link]
SourceFactory = Callable[[Config], SampleSource]
MAX_WAIT = 1.0  # the loop wakes at least this often (signals, deadlines, watchdog)
# What a full or failing state_dir raises: SQLite ("database or disk is full", "disk I/O error") and
# plain file writes (ENOSPC, EDQUOT, EIO). The loop survives them and tries again on the next round.
STORAGE_ERRORS = (sqlite3.OperationalError, OSError)


def default_link(config: Config, events: queue.SimpleQueue[object], logger: logging.Logger) -> Link:
    return make_link(config.mqtt, config.client_id, events, logger, min(60.0, config.delivery.retry_max_delay))


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
    ) -> None:
        self.config = config
        self.source_factory = source_factory
        self.log = logger
        self.reload_config = reload_config
        self.link_factory = link_factory
        self.notifier = notifier or Notifier({})
        self.rng = rng or random.Random()
        self.max_reports = max_reports  # stop after this many reports settle (demo)
        self.events: queue.SimpleQueue[object] = queue.SimpleQueue()
        self.stopping = False
        self.reports_built = 0
        self.conn = Connection(f"{config.mqtt.endpoint}:{config.mqtt.port}", logger)
        self.retry_at: Dict[int, float] = {}  # report id -> monotonic time of its next publish
        self.subscribed_formats: Set[str] = set()
        self.last_drain = 0.0
        self.storage_failures = 0  # consecutive failed writes to state_dir (disk full), logged once per burst

    # -- set-up and tear-down -------------------------------------------------------------

    def _open(self) -> None:
        cfg = self.config
        self.outbox = Outbox.open(cfg.state_dir, self.log)
        self.ids = ReportIds(cfg.state_dir, floor=self.outbox.max_known_id())
        self.backlog = Backlog(self.outbox, self.ids, cfg.state_dir, self.log)
        self.builder = ReportBuilder(cfg, self.log.getChild("report"))
        self.source = self.source_factory(cfg)
        if cfg.delivery.backlog == "newest":
            self.backlog.fold_pending()
        now = time.monotonic()
        for pending in self.outbox.pending():
            self.retry_at[pending.report_id] = now
        if self.retry_at:
            self.log.info("Outbox holds %d pending report(s) from before; sending them when connected",
                          len(self.retry_at))
        self.next_report = now + self.rng.uniform(0, min(cfg.report.jitter, cfg.report.interval))
        self.next_watchdog = now
        self._start_link()

    def _start_link(self) -> None:
        self.link = self.link_factory(self.config, self.events, self.log.getChild("mqtt"))
        self.conn.starting(time.monotonic())
        self.link.start()

    def _close(self) -> None:
        self.notifier.stopping()
        self.log.info("Stopping: disconnecting from %s", self.conn.address)
        if not self.link.stop(timeout=2.0):
            self.log.warning("The MQTT client did not confirm the disconnect within 2 s")
        self.source.close()
        self._guarded("saving the status", self._save_meta)
        self.outbox.close()
        self.log.info("Stopped (%d report(s) still pending in the outbox)", len(self.retry_at))

    # -- the loop -------------------------------------------------------------------------

    def run(self) -> int:
        self._open()
        try:
            self.notifier.ready(self._status_line())
            self.log.info("Running: thing %r, report every %.0f s (+ up to %.0f s jitter), backlog %s",
                          self.config.thing_name, self.config.report.interval, self.config.report.jitter,
                          self.config.delivery.backlog)
            while not self.stopping:
                now = time.monotonic()
                wait = max(0.0, min(MAX_WAIT, self._next_deadline() - now))
                try:
                    event = self.events.get(timeout=wait)
                except queue.Empty:
                    event = None
                handled = 0
                while event is not None and handled < 1000:
                    self._guarded("handling an event", self._handle, event)
                    handled += 1
                    try:
                        event = self.events.get_nowait()
                    except queue.Empty:
                        event = None
                if not self.stopping:
                    self._tick(time.monotonic())
        finally:
            self._close()
        return 0

    def _next_deadline(self) -> float:
        deadline = min(self.next_report, self.next_watchdog)
        if self.conn.ready and self.retry_at:
            deadline = min(deadline, *self.retry_at.values())
        return deadline

    def _tick(self, now: float) -> None:
        if now >= self.next_report and not self._done_reporting():
            # Scheduled before the round runs: a round that fails (disk full) must not be retried at once.
            interval = self.config.report.interval
            self.next_report = max(self.next_report + interval, now) + self.rng.uniform(0, self.config.report.jitter)
            self._guarded("storing a report", self._report_round, now)
        if self.conn.ready:
            self._guarded("sending reports", self._publish_due, now)
        self.conn.check_slow(now, self.config.mqtt.connect_timeout)
        if self.conn.restart_due(now):
            self._start_link()
        if self.conn.resubscribe_due(now):
            self._subscribe()
        if self.notifier.watchdog_interval and now >= self.next_watchdog:
            self.notifier.watchdog()
            self.next_watchdog = now + self.notifier.watchdog_interval
        elif not self.notifier.watchdog_interval:
            self.next_watchdog = now + 3600
        self.notifier.status(self._status_line())
        if self._done_reporting() and not self.retry_at:
            self.log.info("Built %d report(s) and none is pending; stopping as asked", self.reports_built)
            self.stopping = True

    def _guarded(self, what: str, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn``; a storage error (state_dir full or failing) is logged once per burst, not fatal."""
        try:
            fn(*args)
        except STORAGE_ERRORS as exc:
            self.storage_failures += 1
            if self.storage_failures == 1:
                self.log.error("Cannot write to %s while %s: %s; the report(s) concerned stay pending or are "
                               "skipped, and writing is retried every round", self.config.state_dir, what, exc)
            return
        if self.storage_failures and what == "storing a report":
            self.log.warning("Writing to %s works again (after %d failed write(s))", self.config.state_dir,
                             self.storage_failures)
            self.storage_failures = 0

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
        wall = time.time()
        self.reports_built += 1
        try:
            encoded = self.builder.build(report_id, samples)
        except ReportError as exc:
            self.log.error("Report %d could not be built: %s", report_id, first_violations(exc.violations))
            self.outbox.record_unsent(report_id, "dropped", f"build failed: {exc}"[:500], wall)
            return
        pending = Pending(report_id, encoded.format, encoded.payload, wall, 0, wall, None, False,
                          _network(samples))
        change = self.backlog.store(pending, self.config.delivery)
        for rid in change.removed:
            self.retry_at.pop(rid, None)
        if change.stored is not None:
            self.retry_at[change.stored.report_id] = now
        self.log.info("Built report %d (%d bytes, %d sample(s))", report_id, len(encoded.payload), len(samples))
        self._save_meta(last_report_id=report_id, last_report_at=wall)

    def _publish_due(self, now: float) -> None:
        due = sorted(rid for rid, at in self.retry_at.items() if at <= now)
        pace = self.config.delivery.backlog == "all" and self.config.delivery.drain_interval > 0
        for rid in due:
            if pace and now - self.last_drain < self.config.delivery.drain_interval:
                self.retry_at[rid] = max(self.retry_at[rid], self.last_drain + self.config.delivery.drain_interval)
                continue
            pending = self.outbox.get(rid)
            if pending is None:
                self.retry_at.pop(rid, None)
                continue
            if pending.format not in self.subscribed_formats:
                self._subscribe()
                return
            self.link.publish(report_topic(self.config.thing_name, pending.format), pending.payload, rid)
            attempt = pending.attempts + 1
            wait = self._backoff(attempt)
            self.retry_at[rid] = now + wait  # before the write: a failed write must not make it due at once
            self.last_drain = now
            self.outbox.record_attempt(rid, time.time(), time.time() + wait)
            if attempt == 1:
                self.log.info("Published report %d (%d bytes)", rid, len(pending.payload))
            else:
                self.log.info("Published report %d again (attempt %d; no reply yet); next try in %.0f s",
                              rid, attempt, wait)

    def _backoff(self, attempt: int) -> float:
        d = self.config.delivery
        base = d.reply_timeout if attempt <= 1 else min(d.retry_max_delay, d.reply_timeout * 2 ** (attempt - 1))
        jittered = base * (1.0 + 0.2 * self.rng.random()) if attempt > 1 else base
        return max(min(d.reply_timeout, d.retry_max_delay), min(jittered, d.retry_max_delay))

    # -- events ---------------------------------------------------------------------------

    def _handle(self, event: object) -> None:
        now = time.monotonic()
        if isinstance(event, ev.Message):
            self._on_message(event)
        elif isinstance(event, ev.PublishDone):
            if event.ok:
                self.outbox.mark_delivered(event.report_id)
            else:
                self.log.debug("Publish of report %d did not complete: %s", event.report_id, event.error)
        elif isinstance(event, ev.Connected):
            self.conn.connected(now, event.session_present)
            if not event.session_present or not self.subscribed_formats:
                self.subscribed_formats = set()
                self._subscribe()
            for rid in self.outbox_sent_ids():
                self.retry_at[rid] = now  # replies sent while we were away are lost
        elif isinstance(event, ev.Disconnected):
            self.conn.lost(now, event.error)
            self.subscribed_formats = set()
        elif isinstance(event, ev.ConnectFailed):
            self.conn.failed(now, event.error, event.retry_by_caller)
        elif isinstance(event, ev.Subscribed):
            self.conn.subscribed(now, event.ok, event.detail)
            if event.ok:
                self.subscribed_formats |= self._wanted_formats()
        elif isinstance(event, ev.SignalEvent):
            if event.name == "HUP":
                self._reload()
            else:
                self.log.info("Received SIG%s", event.name)
                self.stopping = True

    def outbox_sent_ids(self) -> Set[int]:
        return {p.report_id for p in self.outbox.pending() if p.attempts > 0}

    def _wanted_formats(self) -> Set[str]:
        return {self.config.report.format} | {p.format for p in self.outbox.pending()}

    def _subscribe(self) -> None:
        if self.conn.subscribing:
            return
        topics = [reply_topic(self.config.thing_name, fmt, outcome)
                  for fmt in sorted(self._wanted_formats()) for outcome in ("accepted", "rejected")]
        self.conn.subscribing = True
        self.link.subscribe(topics)

    def _on_message(self, message: ev.Message) -> None:
        reply = parse_reply(message.topic, message.payload, self.config.thing_name)
        if isinstance(reply, Unusable):
            self.conn.limited_warning(f"Ignored a message on {message.topic[:200]!r}: {reply.reason}")
            return
        self._settle(reply)

    def _settle(self, reply: Reply) -> None:
        outcome = "accepted" if reply.accepted else "rejected"
        if self.outbox.finish(reply.report_id, outcome, reply.error_code, reply.error_message, time.time()):
            self.retry_at.pop(reply.report_id, None)
            if reply.accepted:
                self.log.info("Report %d accepted", reply.report_id)
            else:
                self.log.warning("Report %d rejected: %s: %s", reply.report_id, reply.error_code, reply.error_message)
            self._save_meta(last_outcome=outcome, last_outcome_id=reply.report_id)
            return
        earlier = self.outbox.outcome_of(reply.report_id)
        if earlier is None:
            self.conn.limited_warning(f"Ignored a reply for unknown report id {reply.report_id}")
        else:
            self.log.debug("Late or repeated %s reply for report %d (already %s)", outcome, reply.report_id, earlier)

    # -- reload -----------------------------------------------------------------------------

    def _reload(self) -> None:
        if self.reload_config is None:
            self.log.warning("Received SIGHUP but this run has no config file to reload")
            return
        self.notifier.reloading()
        try:
            new = self.reload_config()
            problems = audit_files(new)
            if problems:
                raise ConfigError(problems)
        except AgentError as exc:
            self.log.error("Reload refused, keeping the running configuration: %s", str(exc).replace("\n", "; "))
            self.notifier.ready(self._status_line())
            return
        old = self.config
        if new.state_dir != old.state_dir:
            self.log.warning("state_dir changed to %s; that takes a restart (keeping %s)", new.state_dir, old.state_dir)
            new = _with_state_dir(new, old.state_dir)
        self.config = new
        changed = [name for name in ("thing_name", "mqtt", "report", "delivery", "collectors", "custom_metrics")
                   if getattr(new, name) != getattr(old, name)]
        self.builder = ReportBuilder(new, self.log.getChild("report"))
        if "collectors" in changed or "custom_metrics" in changed:
            self.source.close()
            self.source = self.source_factory(new)
        if "mqtt" in changed or "thing_name" in changed:
            self.link.stop(timeout=2.0)
            self.subscribed_formats = set()
            self.conn = Connection(f"{new.mqtt.endpoint}:{new.mqtt.port}", self.log)
            self._start_link()
        if "report" in changed:
            self.next_report = min(self.next_report, time.monotonic() + new.report.interval)
        if new.delivery.backlog == "newest" and old.delivery.backlog != "newest":
            change = self.backlog.fold_pending()
            for rid in change.removed:
                self.retry_at.pop(rid, None)
            if change.stored is not None:
                self.retry_at[change.stored.report_id] = time.monotonic()
        self.log.info("Reloaded configuration from %s (changed: %s)", new.source, ", ".join(changed) or "nothing")
        self.notifier.ready(self._status_line())

    # -- status ---------------------------------------------------------------------------

    def _status_line(self) -> str:
        meta_id = getattr(self, "_last_id", None)
        last = f"last report {meta_id}" if meta_id else "no report yet"
        return f"{last}; {len(self.retry_at)} pending; {self.conn.state}"

    def _save_meta(self, **extra: object) -> None:
        if "last_report_id" in extra:
            self._last_id = extra["last_report_id"]
        values: Dict[str, object] = dict(extra)
        values["collectors"] = {k: dict(v) for k, v in self.source.stats().items()}
        values["connection"] = self.conn.state
        values["updated_at"] = time.time()
        self.outbox.set_meta(values)


def _network(samples: list[Sample]) -> Optional[NetworkStats]:
    for sample in samples:
        if sample.name == "network_stats" and isinstance(sample.value, NetworkStats):
            return sample.value
    return None


def _with_state_dir(config: Config, state_dir: Path) -> Config:
    return dataclasses.replace(config, state_dir=state_dir)
