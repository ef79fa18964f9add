"""On-device behaviors as a consumer: each round judged, each transition journalled once, published and handed on.

Per round (inside the round's outbox transaction, so the alarm state, the events and the
report commit together): :func:`agent.behaviors.tracker.step` over the round's checked
values; every transition is one counter (``behavior.NAME.KIND``); an event not suppressed
(``suppressAlerts``) goes into the outbox's ``violations`` queue when ``violations.topic`` is
set, published by the shared lane like a topic sink's message. The alarm state is the status
meta's ``behavior_states``. Only once the round is committed does the consumer adopt the new
states, write the journal lines and hand the events to ``violations.exec``
(:mod:`agent.consumers.violations.hook`): a commit that fails (disk full) leaves memory, disk
and the journal as they were, and the next round finds the same transitions again.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Dict, List, Mapping, Optional, Tuple

from agent.behaviors.event import violation_event
from agent.behaviors.tracker import BehaviorState, EventType, Transition, dump_states, load_states, step
from agent.config.model import VIOLATIONS_QUEUE, Config
from agent.consumers.base import Consumer, Context, Round, Step
from agent.consumers.queue import MessageQueue
from agent.consumers.violations.hook import HOOK_QUEUE, HookRunner, check_exec
from agent.events import HookDone
from agent.outbox.messages import Messages
from agent.sinks.topics import render_topic

STATE_KEY = "behavior_states"
QUEUE = VIOLATIONS_QUEUE  # the outbox queue of the events; no sink may take its name


def counter_name(behavior: str, kind: EventType) -> str:
    return f"behavior.{behavior}.{kind}"


class ViolationsConsumer(Consumer):
    name = VIOLATIONS_QUEUE

    def __init__(self, ctx: Context, config: Config) -> None:
        self.ctx = ctx
        self.log = ctx.log
        self.queue = MessageQueue(QUEUE, Messages(ctx.outbox), ctx.admission, ctx.log)
        self.states: Dict[str, BehaviorState] = {}
        raw = ctx.outbox.meta().get(STATE_KEY)
        if raw is not None:
            try:
                self.states = load_states(raw)
            except (ValueError, KeyError, TypeError) as exc:
                self.log.warning("The saved alarm state of the behaviors is unreadable (%s); starting afresh", exc)
        self.hook: Optional[HookRunner] = None
        self.failing_hook = False
        self.config = config
        self.prepare(config)()  # checks violations.exec's program (a start refuses it as a reload does)
        active = [name for name, s in self.states.items() if s.in_alarm]
        if active:
            self.log.info("Behaviors still in alarm from before: %s", ", ".join(sorted(active)))

    def prepare(self, config: Config) -> Step:
        """Check ``violations.exec``'s program (raises :class:`ConfigError`); the hook changes only on adopt."""
        check_exec(config)

        def adopt() -> None:
            self.config = config
            argv = config.violations.exec if config.behaviors else ()
            if self.hook is not None and (not argv or self.hook.argv != argv
                                          or self.hook.timeout != config.violations.exec_timeout):
                self.hook.stop()
                self.hook = None
            if argv and self.hook is None:
                self.hook = HookRunner(argv, config.violations.exec_timeout, self.ctx.events)

        return adopt

    def store(self, rnd: Round) -> Optional[Step]:
        """Judge the round inside its transaction; the new states, the journal lines and exec wait for the commit.

        A behavior whose metric is in ``rnd.not_due`` (its collector's interval was not up) is not judged this
        round: its state waits, neither a datapoint nor "stopped arriving"."""
        if not self.config.behaviors and not self.states:
            return None
        checked = rnd.checked
        waiting = {b.name for b in self.config.behaviors
                   if b.metric in rnd.not_due and b.metric not in checked.values}
        judged = [b for b in self.config.behaviors if b.name not in waiting]
        before = {name: s for name, s in self.states.items() if name not in waiting}
        states, transitions = step(before, judged, checked.values, checked.timestamp_ms, lambda: str(uuid.uuid4()))
        states.update({name: self.states[name] for name in waiting if name in self.states})
        self.ctx.outbox.set_meta({STATE_KEY: dump_states(states)})
        cfg = self.config.violations
        to_exec: List[Dict[str, Any]] = []
        for t in transitions:
            self.ctx.outbox.bump(counter_name(t.behavior.name, t.kind))
            event = violation_event(t, checked.thing_name, cfg.security_profile_name)
            published = not t.behavior.suppress_alerts
            if published and cfg.topic:
                self.queue.add(render_topic(cfg.topic, checked.thing_name),
                               json.dumps(event, separators=(",", ":")).encode(), rnd.wall, cfg.max_pending)
            if published and self.hook is not None:
                to_exec.append(event)

        def committed() -> None:
            self.states = states
            for t in transitions:
                self._log(t, not t.behavior.suppress_alerts)
            self._hand_to_exec(to_exec)

        return committed

    def _hand_to_exec(self, events: List[Dict[str, Any]]) -> None:
        if self.hook is None:
            return
        for event in events:
            if not self.hook.submit(event):
                self.log.error("Violation %s of %r not handed to %s: %d events already wait for it",
                               event["violationId"], event["behavior"].get("name"), self.hook.argv[0], HOOK_QUEUE)

    def handle(self, event: object, now: float) -> bool:
        if isinstance(event, HookDone):
            self.hook_done(event)
            return True
        return False

    def queues(self) -> Tuple[str, ...]:
        return (QUEUE,)

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
            self.log.warning("Behavior %r alarm invalidated after %.0f s: %s has not arrived for more than 2 days "
                             "(its collector keeps failing), or the behavior changed or went; violation %s%s",
                             b.name, (t.time_ms - t.started_ms) / 1000, b.metric, t.violation_id, where)

    def _where(self, published: bool) -> str:
        if not published:
            return " (suppressAlerts: recorded, not published)"
        cfg = self.config.violations
        return f"; event to {render_topic(cfg.topic, self.config.thing_name)}" if cfg.topic else ""

    def status(self) -> Dict[str, Any]:
        """Active violations and counts per behavior, for the status meta."""
        return {"violations": self.summary()}

    def summary(self) -> Dict[str, Any]:
        if not self.config.behaviors and not self.states:  # saved with every outcome: no query for nothing
            return {"active": [], "counts": {}, "profile": self.config.violations.security_profile_name}
        counters = self.ctx.outbox.counters()
        names = [b.name for b in self.config.behaviors]
        active = [{"behavior": name, "violation_id": s.violation_id, "since_ms": s.since_ms,
                   "metric": s.definition.get("metric"), "value": s.last_value}
                  for name, s in sorted(self.states.items()) if s.in_alarm]
        counts = {name: {kind: counters.get(counter_name(name, kind), 0) for kind in EventType} for name in names}
        return {"active": active, "counts": counts, "profile": self.config.violations.security_profile_name}

    def close(self) -> None:
        if self.hook is not None:
            self.hook.stop()


def _short(value: Optional[Mapping[str, Any]], limit: int = 120) -> str:
    text = json.dumps(value, separators=(",", ":")) if value is not None else "-"
    return text if len(text) <= limit else text[: limit - 3] + "..."
