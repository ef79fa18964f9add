"""On-device behaviors in the loop: each round judged, each transition journalled once, published and handed on.

Per round (inside the round's outbox transaction, so the alarm state, the events and the
report commit together): :func:`agent.behaviors.tracker.step` over the round's checked
values; every transition is one journal line and one counter (``behavior.NAME.KIND``); an
event not suppressed (``suppressAlerts``) goes into the outbox's ``violations`` queue when
``violations.topic`` is set, delivered like a topic sink's message. The alarm state is the
status meta's ``behavior_states``: a restart neither raises an active alarm again nor
forgets to clear it. After the commit, ``violations.exec`` gets each event on stdin in the
:class:`HookRunner`'s thread, which never blocks the loop.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import uuid
from typing import AbstractSet, Any, Dict, List, Mapping, Optional, Sequence

from agent.behaviors.event import violation_event
from agent.behaviors.tracker import BehaviorState, EventType, Transition, dump_states, load_states, step
from agent.collectors.process import describe_exit, program_problem, run_bounded
from agent.config.model import Config
from agent.delivery.events import HookDone
from agent.delivery.outbox import Outbox
from agent.delivery.sinks import VIOLATIONS, SinkSet
from agent.errors import ConfigError
from agent.report.cloud import CheckedRound
from agent.sinks.topics import render_topic

STATE_KEY = "behavior_states"
HOOK_QUEUE = 100  # events waiting for the exec program; more are not handed to it (logged)
KINDS = tuple(k.value for k in EventType)


def check_exec(config: Config) -> None:
    """``violations.exec``'s program may be run (the exec collector's rules); raises :class:`ConfigError`."""
    argv = config.violations.exec
    if config.behaviors and argv:
        problem = program_problem(argv[0])
        if problem is not None:
            raise ConfigError.single(config.source, "violations.exec[0]", problem)


def counter_name(behavior: str, kind: str) -> str:
    return f"behavior.{behavior}.{kind}"


class Violations:
    def __init__(self, config: Config, outbox: Outbox, sinks: SinkSet, events: queue.SimpleQueue[object],
                 logger: logging.Logger) -> None:
        self.outbox = outbox
        self.sinks = sinks
        self.log = logger
        self.events = events
        self.states: Dict[str, BehaviorState] = {}
        raw = outbox.meta().get(STATE_KEY)
        if raw is not None:
            try:
                self.states = load_states(raw)
            except (ValueError, KeyError, TypeError) as exc:
                logger.warning("The saved alarm state of the behaviors is unreadable (%s); starting afresh", exc)
        self.hook: Optional[HookRunner] = None
        self.failing_hook = False
        self.configure(config)
        active = [name for name, s in self.states.items() if s.in_alarm]
        if active:
            logger.info("Behaviors still in alarm from before: %s", ", ".join(sorted(active)))

    def configure(self, config: Config) -> None:
        self.config = config
        argv = config.violations.exec if config.behaviors else ()
        if self.hook is not None and (not argv or self.hook.argv != argv
                                      or self.hook.timeout != config.violations.exec_timeout):
            self.hook.stop()
            self.hook = None
        if argv and self.hook is None:
            self.hook = HookRunner(argv, config.violations.exec_timeout, self.events)

    def round(self, checked: CheckedRound, now: float, not_due: AbstractSet[str] = frozenset()
              ) -> List[Dict[str, Any]]:
        """Judge the round; call inside the round's transaction. Returns the events to hand to exec after it.

        A behavior whose metric is in ``not_due`` (its collector's interval was not up) is not judged this
        round: its state waits, neither a datapoint nor "stopped arriving"."""
        if not self.config.behaviors and not self.states:
            return []
        waiting = {b.name for b in self.config.behaviors if b.metric in not_due and b.metric not in checked.values}
        judged = [b for b in self.config.behaviors if b.name not in waiting]
        before = {name: s for name, s in self.states.items() if name not in waiting}
        states, transitions = step(before, judged, checked.values, checked.timestamp_ms, lambda: str(uuid.uuid4()))
        states.update({name: self.states[name] for name in waiting if name in self.states})
        self.outbox.set_meta({STATE_KEY: dump_states(states)})
        cfg = self.config.violations
        to_exec: List[Dict[str, Any]] = []
        for t in transitions:
            self.outbox.bump(counter_name(t.behavior.name, t.kind))
            event = violation_event(t, checked.thing_name, cfg.security_profile_name)
            published = not t.behavior.suppress_alerts
            if published and cfg.topic:
                self.sinks.queue(VIOLATIONS, render_topic(cfg.topic, checked.thing_name),
                                 json.dumps(event, separators=(",", ":")).encode(), now, cfg.max_pending)
            if published and self.hook is not None:
                to_exec.append(event)
            self._log(t, published)
        self.states = states
        return to_exec

    def after_commit(self, events: List[Dict[str, Any]]) -> None:
        if self.hook is None:
            return
        for event in events:
            if not self.hook.submit(event):
                self.log.error("Violation %s of %r not handed to %s: %d events already wait for it",
                               event["violationId"], event["behavior"].get("name"), self.hook.argv[0], HOOK_QUEUE)

    def hook_done(self, done: HookDone) -> None:
        """The exec program's result for one event (on the loop thread)."""
        if done.ok:
            if self.failing_hook:
                self.failing_hook = False
                self.log.info("violations.exec works again (violation %s)", done.violation_id)
            return
        if not self.failing_hook:
            self.failing_hook = True
            self.log.error("violations.exec failed for violation %s: %s (logged once until it works again)",
                           done.violation_id, done.detail)

    def _log(self, t: Transition, published: bool) -> None:
        b = t.behavior
        crit = b.criteria
        rule = f"{b.metric} {crit.comparison_operator} {_short(crit.value)}"
        where = self._where(published)
        if t.kind == EventType.IN_ALARM:
            self.log.warning("Behavior %r in alarm: %s is %s, not normal by %s; violation %s%s", b.name, b.metric,
                             _short(t.value), rule, t.violation_id, where)
        elif t.kind == EventType.ALARM_CLEARED:
            self.log.info("Behavior %r alarm cleared after %.0f s: %s is %s, normal by %s; violation %s%s", b.name,
                          (t.time_ms - t.started_ms) / 1000, b.metric, _short(t.value), rule, t.violation_id, where)
        else:
            self.log.warning("Behavior %r alarm invalidated after %.0f s: %s no longer arrives (its collector "
                             "failed, or the behavior changed or went); violation %s%s", b.name,
                             (t.time_ms - t.started_ms) / 1000, b.metric, t.violation_id, where)

    def _where(self, published: bool) -> str:
        if not published:
            return " (suppressAlerts: recorded, not published)"
        cfg = self.config.violations
        return f"; event to {render_topic(cfg.topic, self.config.thing_name)}" if cfg.topic else ""

    def status(self) -> Dict[str, Any]:
        """Active violations and counts per behavior, for the status meta."""
        if not self.config.behaviors and not self.states:  # saved with every outcome: no query for nothing
            return {"active": [], "counts": {}, "profile": self.config.violations.security_profile_name}
        counters = self.outbox.counters()
        names = [b.name for b in self.config.behaviors]
        active = [{"behavior": name, "violation_id": s.violation_id, "since_ms": s.since_ms,
                   "metric": s.definition.get("metric"), "value": s.last_value}
                  for name, s in sorted(self.states.items()) if s.in_alarm]
        counts = {name: {kind: counters.get(counter_name(name, kind), 0) for kind in KINDS} for name in names}
        return {"active": active, "counts": counts, "profile": self.config.violations.security_profile_name}

    def close(self) -> None:
        if self.hook is not None:
            self.hook.stop()


def _short(value: Optional[Mapping[str, Any]], limit: int = 120) -> str:
    text = json.dumps(value, separators=(",", ":")) if value is not None else "-"
    return text if len(text) <= limit else text[: limit - 3] + "..."


class HookRunner:
    """Runs ``argv`` once per event in a thread of its own, with the event as JSON on stdin (bounded queue)."""

    def __init__(self, argv: Sequence[str], timeout: float, events: queue.SimpleQueue[object]) -> None:
        self.argv = tuple(argv)
        self.timeout = timeout
        self.events = events
        self.jobs: queue.Queue[Optional[Dict[str, Any]]] = queue.Queue(maxsize=HOOK_QUEUE)
        self.thread = threading.Thread(target=self._work, name="violations-exec", daemon=True)
        self.thread.start()

    def submit(self, event: Dict[str, Any]) -> bool:
        try:
            self.jobs.put_nowait(event)
        except queue.Full:
            return False
        return True

    def _work(self) -> None:
        while True:
            event = self.jobs.get()
            if event is None:
                return
            vid = str(event.get("violationId"))
            try:
                result = run_bounded(self.argv, self.timeout, 65536, stdin=json.dumps(event).encode() + b"\n")
            except OSError as exc:
                self.events.put(HookDone(vid, False, f"cannot run {self.argv[0]}: {exc}"))
                continue
            if result.timed_out:
                self.events.put(HookDone(vid, False, f"{self.argv[0]} was killed after {self.timeout:g} s"))
            elif result.returncode != 0:
                line = result.stderr_line()
                self.events.put(HookDone(vid, False, f"{self.argv[0]} {describe_exit(result.returncode or 0)}"
                                                     + (f": {line}" if line else "")))
            else:
                self.events.put(HookDone(vid, True))

    def stop(self, timeout: float = 2.0) -> None:
        """Ask the thread to end after its current event (waiting at most ``timeout``); queued events are dropped."""
        while True:
            try:
                self.jobs.get_nowait()
            except queue.Empty:
                break
        with contextlib.suppress(queue.Full):
            self.jobs.put_nowait(None)
        self.thread.join(timeout)


