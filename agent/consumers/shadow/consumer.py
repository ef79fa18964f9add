"""The named shadow as a consumer: its ``state.reported`` kept current, its desired state handed to the loop.

Lifecycle on one connection (docs/FLEET.md): the response topics (``/get/accepted|rejected``,
``/update/accepted|rejected``, ``/update/delta``, no wildcards) are subscribed by the session after
the reply topics (:meth:`agent.mqtt.session.Session.want_topics`); then ``/get`` reads what the
shadow holds (a 404 means no shadow yet: the first update creates it); then updates carry only
what differs from what the shadow holds (:func:`document.diff`, ``null`` for keys that went away),
paced by :class:`rate.Pace`. Every request carries its own clientToken, so each answer is matched
to its request.

The shadow is state, not a log: nothing goes into the outbox. At most one update is in flight; while
it is, or while the pace holds it, only the newest wanted document is kept (as a diff against what
the shadow last accepted). A rejected update is logged once per (code, message) until one is
accepted, and retried with backoff; a 409 or 413 makes a fresh ``/get`` first. Nothing here stops
anything else: the reports and the sinks never wait for the shadow.

With ``shadow.remote_config`` the desired state of ``/get/accepted`` (whole) and of
``/update/delta`` (the differing fields) goes to the loop as :class:`agent.events.DesiredState`,
uninterpreted; the loop's answer comes back through :meth:`ShadowConsumer.remote_outcome` and is
echoed into reported (so the shadow shows no delta for what was applied) with
``config.desired_version`` and ``config.refused``.

MQTT 3.1.1: AWS IoT closes the connection on a publish the policy denies. A connection lost within
:data:`agent.consumers.queue.SUSPECT_WINDOW` of a shadow request, :data:`SUSPECT_LIMIT` times in a
row, holds the shadow back for ``delivery.message_retry_max_delay`` (logged), so the reports go on.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Set, Tuple

from agent import __version__
from agent import events as ev
from agent.config.model import Config, ShadowConfig
from agent.consumers.base import Consumer, Context, Round, Step
from agent.consumers.queue import SUSPECT_LIMIT, SUSPECT_WINDOW
from agent.consumers.shadow import document
from agent.consumers.shadow.rate import REPLY_TIMEOUT, URGENT_SPACING, Pace
from agent.mqtt.topics import SHADOW_RESPONSES, shadow_topic
from agent.remote.outcome import Outcome
from agent.sinks.health import Health

Alarms = Callable[[], Tuple[str, ...]]


@dataclass
class _Request:
    token: str
    sent_at: float
    reported: Optional[Dict[str, Any]] = None  # an update: the whole reported state it makes the shadow hold


class ShadowConsumer(Consumer):
    name = "shadow"

    def __init__(self, ctx: Context, config: Config, alarms: Alarms) -> None:
        assert config.shadow is not None
        self.ctx = ctx
        self.log = ctx.log.getChild("shadow")
        self.alarms = alarms
        self.run_id = uuid.uuid4().hex[:12]
        self.seq = 0
        self.config = config
        self.shadow: ShadowConfig = config.shadow
        self.pace = Pace(config.report.interval)
        self.held: Optional[Dict[str, Any]] = None  # the reported state the shadow holds; None: unknown (/get)
        self.desired_bytes = 0
        self.version: Optional[int] = None
        self.get: Optional[_Request] = None
        self.last_get: Optional[float] = None
        self.update: Optional[_Request] = None
        self.fresh = False  # the next update follows a /get: it goes at once (urgent)
        self.round_health: Optional[Health] = None  # of the last round
        self.last_report_at: Optional[int] = None
        self.sink_losses: Dict[str, int] = {}  # sink -> failed + dropped as of the last round
        self.failing_sinks: Tuple[str, ...] = ()
        self.desired_version: Optional[int] = None
        self.refused: Mapping[str, str] = {}
        self.echo: Mapping[str, Any] = {}
        self.wanted: Optional[document.Built] = None  # cached until something it is built from changes
        self.wanted_alarms: Tuple[str, ...] = ()
        self.last_delta: Optional[Dict[str, Any]] = None  # the desired fields that differed, as last seen
        self.logged: Set[Tuple[int, str]] = set()  # (code, message) of rejections logged since the last accept
        self.suspects = 0
        self.held_back_until: Optional[float] = None
        self.counts = {"updates": 0, "accepted": 0, "rejected": 0, "gets": 0}
        self.last_accepted_at: Optional[float] = None
        ctx.session.want_topics(self.topics())

    # -- topics and config ----------------------------------------------------------------

    def topic(self, suffix: str) -> str:
        return shadow_topic(self.config.thing_name, self.shadow.name, suffix)

    def topics(self) -> Tuple[str, ...]:
        return tuple(self.topic(s) for s in SHADOW_RESPONSES)

    def prepare(self, config: Config) -> Step:
        assert config.shadow is not None

        def adopt() -> None:
            moved = (config.thing_name, config.shadow) != (self.config.thing_name, self.shadow)
            self.config, self.shadow = config, config.shadow or self.shadow
            self.pace.configure(config.report.interval)
            if moved:  # another shadow (or remote_config flipped): read it afresh
                self.held, self.get, self.update, self.wanted = None, None, None, None
                self.ctx.session.want_topics(self.topics())

        return adopt

    def close(self) -> None:
        self.ctx.session.want_topics(())

    # -- what it reports ------------------------------------------------------------------

    def store(self, rnd: Round) -> Optional[Step]:
        def committed() -> None:
            health = rnd.health
            losses = {s.name: s.failed + s.dropped for s in health.sinks}
            self.failing_sinks = tuple(sorted(name for name, lost in losses.items()
                                              if name in self.sink_losses and lost > self.sink_losses[name]))
            self.sink_losses = losses
            self.round_health, self.last_report_at, self.wanted = health, int(rnd.wall), None

        return committed

    def remote_outcome(self, outcome: Outcome) -> None:
        """The loop resolved a desired state (or, at start, the persisted one): echo what is applied."""
        self.desired_version = outcome.version
        self.refused = dict(outcome.refused)
        self.echo = dict(outcome.applied)
        self.wanted = None

    def facts(self, alarms: Tuple[str, ...]) -> document.Facts:
        health = self.round_health or Health()
        return document.Facts(
            version=__version__,
            failing_collectors=tuple(sorted(c.name for c in health.collectors if not c.ok)),
            failing_sinks=self.failing_sinks,
            alarms=alarms,
            last_report_at=self.last_report_at,
            outbox_pending=health.outbox_pending,
            remote_config=self.shadow.remote_config,
            desired_version=self.desired_version if self.shadow.remote_config else None,
            refused=self.refused if self.shadow.remote_config else {},
            echo=self.echo if self.shadow.remote_config else {},
        )

    def _wanted(self) -> document.Built:
        alarms = tuple(sorted(self.alarms()))
        if self.wanted is None or alarms != self.wanted_alarms:
            self.wanted_alarms = alarms
            self.wanted = document.build(self.facts(alarms), self.desired_bytes)
        return self.wanted

    def _pending_update(self) -> Optional[Tuple[Dict[str, Any], Dict[str, Any], bool]]:
        """(the update's reported, the whole reported it makes, routine) when the shadow needs one."""
        if self.held is None or self.round_health is None:
            return None  # not read yet, or no round yet (health unknown)
        built = self._wanted()
        change = document.diff(self.held, built.reported)
        if not change:
            return None
        return change, built.reported, not self.fresh and document.is_routine(change)

    # -- the wire ---------------------------------------------------------------------------

    def _token(self, kind: str) -> str:
        self.seq += 1
        return f"{kind}-{self.run_id}-{self.seq}"  # at most 64 bytes: "update-" + 12 + "-" + digits

    def _publish(self, suffix: str, body: Dict[str, Any], token: str) -> None:
        payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        self.ctx.session.publish(self.topic(suffix), payload, ev.ShadowRef(token))

    def tick(self, now: float) -> None:
        session = self.ctx.session
        if not session.has_topics(self.topics()):
            return
        if self.held_back_until is not None:
            if now < self.held_back_until:
                return
            self.held_back_until = None
        for request in (self.get, self.update):
            if request is not None and now >= request.sent_at + REPLY_TIMEOUT:
                self.log.warning("No answer to shadow request %s within %.0f s; reading the shadow again",
                                 request.token, REPLY_TIMEOUT)
                self.get, self.update, self.held = None, None, None
                break
        if self.held is None:
            if self.get is None and (self.last_get is None or now >= self.last_get + URGENT_SPACING):
                self.get = _Request(self._token("get"), now)
                self.last_get = now
                self.counts["gets"] += 1
                self._publish("get", {"clientToken": self.get.token}, self.get.token)
            return
        if self.update is not None:
            return
        pending = self._pending_update()
        if pending is None:
            return
        change, whole, routine = pending
        if now < self.pace.due_at(routine, now):
            return
        self.update = _Request(self._token("update"), now, whole)
        self.pace.sent(now, routine)
        self.fresh = False
        self.counts["updates"] += 1
        self._publish("update", {"state": {"reported": change}, "clientToken": self.update.token}, self.update.token)
        self.log.debug("Shadow update %s: %s", self.update.token, json.dumps(change, separators=(",", ":")))

    def next_deadline(self) -> Optional[float]:
        if not self.ctx.session.has_topics(self.topics()):
            return None
        if self.held_back_until is not None:
            return self.held_back_until
        times = [r.sent_at + REPLY_TIMEOUT for r in (self.get, self.update) if r is not None]
        if self.held is None and self.get is None:
            times.append(self.last_get + URGENT_SPACING if self.last_get is not None else float("-inf"))
        elif self.update is None:
            pending = self._pending_update()
            if pending is not None:
                times.append(self.pace.due_at(pending[2], self.ctx.clock.monotonic()))
        return min(times, default=None)

    def handle(self, event: object, now: float) -> bool:
        if isinstance(event, ev.Message):
            suffix = self._suffix(event.topic)
            if suffix is None:
                return False
            self._on_message(suffix, event.payload, now)
            return True
        if isinstance(event, ev.PublishDone) and isinstance(event.tag, ev.ShadowRef):
            if not event.ok and event.refused:
                self._rejected(event.tag.token, 403, f"publish refused by the broker: {event.error}", now)
            return True
        if isinstance(event, ev.Connected):
            self.get, self.update, self.held = None, None, None
        elif isinstance(event, ev.Disconnected):
            sent = [r.sent_at for r in (self.get, self.update) if r is not None]
            if sent and now - max(sent) <= SUSPECT_WINDOW:
                self.suspects += 1
                if self.suspects >= SUSPECT_LIMIT:
                    wait = self.config.delivery.message_retry_max_delay
                    self.held_back_until = now + wait
                    self.suspects = 0
                    self.log.error("The connection was lost right after a shadow request %d times in a row; holding "
                                   "the shadow back for %.0f s (the reports go on). Check that the device policy "
                                   "allows iot:Publish on %s and %s (docs/FLEET.md, \"Device policy\")",
                                   SUSPECT_LIMIT, wait, self.topic("get"), self.topic("update"))
            self.get, self.update, self.held = None, None, None
        return False

    def _suffix(self, topic: str) -> Optional[str]:
        prefix = self.topic("")
        if not topic.startswith(prefix):
            return None
        suffix = topic[len(prefix):]
        return suffix if suffix in SHADOW_RESPONSES else None

    def _on_message(self, suffix: str, payload: bytes, now: float) -> None:
        try:
            body = json.loads(payload.decode("utf-8"))
            if not isinstance(body, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:  # UnicodeDecodeError is one
            self.ctx.session.link_state.limited_warning(
                f"Ignored a message on {self.topic(suffix)!r}: {exc}", now)
            return
        token = body.get("clientToken")
        self.suspects = 0
        if suffix == "update/delta":
            self._delta(body, now)
        elif suffix == "get/accepted" and self.get is not None and token == self.get.token:
            self._got(body)
        elif suffix == "get/rejected" and self.get is not None and token in (self.get.token, None):
            self.get = None
            if body.get("code") == 404:  # no shadow yet: the first update creates it
                self.held, self.desired_bytes, self.version, self.fresh = {}, 0, None, True
                self.log.info("Shadow %r does not exist yet; the first update creates it", self.shadow.name)
            else:
                self._log_rejection("get", body)
        elif suffix == "update/accepted" and self.update is not None and token == self.update.token:
            self.held, self.update = self.update.reported, None
            self.version = _int(body.get("version"), self.version)
            self.pace.accepted()
            self.counts["accepted"] += 1
            self.last_accepted_at = self.ctx.clock.wall()
            if self.logged:
                self.log.info("Shadow update %s accepted (version %s); updates work again", token, self.version)
                self.logged = set()
        elif suffix == "update/rejected" and self.update is not None and token in (self.update.token, None):
            self._rejected(self.update.token, body.get("code"), body.get("message"), now)

    def _got(self, body: Dict[str, Any]) -> None:
        state = body.get("state")
        state = state if isinstance(state, dict) else {}
        reported = state.get("reported")
        desired = state.get("desired")
        self.get = None
        self.held = reported if isinstance(reported, dict) else {}
        desired = desired if isinstance(desired, dict) else {}
        self.desired_bytes = document.size_of(desired) if desired else 0
        self.version = _int(body.get("version"), None)
        self.fresh, self.wanted = True, None
        delta = state.get("delta")
        self.last_delta = delta if isinstance(delta, dict) else {}
        if self.shadow.remote_config and self.version is not None:
            self.ctx.events.put(ev.DesiredState(desired, self.version, True))

    def _delta(self, body: Dict[str, Any], now: float) -> None:
        state = body.get("state")
        version = _int(body.get("version"), None)
        if not isinstance(state, dict) or version is None:
            self.ctx.session.link_state.limited_warning(
                f"Ignored a message on {self.topic('update/delta')!r}: no state object or no version", now)
            return
        self.desired_bytes = max(self.desired_bytes, document.size_of(state))
        self.wanted = None
        if document.diff(self.last_delta or {}, state) == {} and document.diff(state, self.last_delta or {}) == {}:
            return  # the same difference again: the service sends it after each of our updates while a refused
            # key stays in desired; forwarding it would only move config.desired_version (and update again)
        self.last_delta = state
        if self.shadow.remote_config:
            self.ctx.events.put(ev.DesiredState(state, version, False))

    def _rejected(self, token: str, code: Any, message: Any, now: float) -> None:
        self.update = None
        self.pace.rejected(now)
        self.counts["rejected"] += 1
        self._log_rejection("update", {"code": code, "message": message, "clientToken": token})
        if code in (409, 413):  # another version, or a desired state larger than thought: read it again
            self.held = None

    def _log_rejection(self, what: str, body: Mapping[str, Any]) -> None:
        key = (_int(body.get("code"), 0) or 0, str(body.get("message"))[:200])
        if key in self.logged:
            return
        self.logged.add(key)
        self.log.warning("Shadow %r: %s %s rejected with %s: %s (logged once until an update is accepted; the "
                         "reports go on)", self.shadow.name, what, body.get("clientToken"), key[0], key[1])

    # -- what it shows ----------------------------------------------------------------------

    def status(self) -> Mapping[str, Any]:
        return {"shadow": {"name": self.shadow.name, "version": self.version, **self.counts,
                           "last_accepted_at": self.last_accepted_at}}


def _int(value: Any, default: Optional[int]) -> Optional[int]:
    return value if isinstance(value, int) and not isinstance(value, bool) else default
