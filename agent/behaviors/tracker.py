"""The alarm state of each behavior, advanced once per report round: a pure state machine.

Detect's rules (``BehaviorCriteria`` in the API reference): an alarm occurs when a device violates the behavior
for ``consecutiveDatapointsToAlarm`` datapoints in a row (default 1), and clears when it "is no longer in
violation of the behavior for the specified number of consecutive datapoints" (``consecutiveDatapointsToClear``,
default 1). The developer guide adds that an alert "is also sent when a monitored device ... had been causing an
alert but stops reporting": here, a metric that stops arriving while in alarm (its collector fails, it is left
out of the round) gives ``alarm-invalidated`` and the state starts over.

One :class:`Transition` per change of alarm state, never one per round. A behavior removed from the config while
in alarm is invalidated; one whose definition changed (its ``raw`` object differs) is invalidated when in alarm
and evaluated afresh. :class:`BehaviorState` goes to and from JSON, so that an alarm survives a restart: the
restarted agent neither raises it again nor forgets to clear it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from agent.behaviors.evaluate import Datapoint, judged_value, violates
from agent.behaviors.model import SUMMED_METRICS, Behavior, plain_copy
from agent.schema import TextEnum

STATE_VERSION = 1
# A behavior in alarm whose metric stops arriving keeps its alarm this long, then it is invalidated. AWS
# documents invalidation only for a device that "doesn't publish any metrics for more than two days"
# (Device Defender troubleshooting guide); a missing datapoint is neither a violation nor a normal one
# (consecutiveDatapointsToClear counts normal datapoints), so one failed collector run changes nothing.
NO_DATA_INVALIDATES_AFTER_MS = 2 * 24 * 3600 * 1000
MAX_STREAK = 10  # the largest consecutiveDatapointsToAlarm/ToClear; a longer streak changes nothing


class EventType(TextEnum):
    """``violationEventType``."""

    IN_ALARM = "in-alarm"
    ALARM_CLEARED = "alarm-cleared"
    ALARM_INVALIDATED = "alarm-invalidated"


@dataclass(frozen=True)
class Transition:
    """A change of one behavior's alarm state.

    ``value`` is the MetricValue judged (the window's sum for a summed duration); None for ``alarm-invalidated``,
    which no datapoint caused. ``started_ms`` is when the alarm began (``time_ms`` itself for ``in-alarm``).
    """

    behavior: Behavior
    kind: EventType
    violation_id: str
    value: Optional[Dict[str, Any]]
    time_ms: int
    started_ms: int


@dataclass(frozen=True)
class BehaviorState:
    """What one behavior remembers between rounds (and across a restart)."""

    definition: Dict[str, Any]  # the behavior's `raw` object when this state began
    in_alarm: bool = False
    violation_id: Optional[str] = None
    since_ms: Optional[int] = None  # when the alarm began
    violating_streak: int = 0  # violating datapoints in a row
    normal_streak: int = 0  # datapoints in a row that did not violate
    history: Tuple[Datapoint, ...] = ()  # the datapoints inside the duration window; else the newest only
    last_value: Optional[Dict[str, Any]] = None
    last_ms: Optional[int] = None

    @classmethod
    def fresh(cls, behavior: Behavior) -> BehaviorState:
        return cls(definition=plain_copy(behavior.raw))

    def behavior(self) -> Behavior:
        """The behavior this state was built for (what a removed behavior's invalidation names)."""
        return Behavior.from_raw(self.definition)

    def to_json(self) -> Dict[str, Any]:
        return {
            "definition": plain_copy(self.definition),
            "in_alarm": self.in_alarm,
            "violation_id": self.violation_id,
            "since_ms": self.since_ms,
            "violating_streak": self.violating_streak,
            "normal_streak": self.normal_streak,
            "history": [[p.timestamp_ms, plain_copy(p.value)] for p in self.history],
            "last_value": plain_copy(self.last_value),
            "last_ms": self.last_ms,
        }

    @classmethod
    def from_json(cls, data: Any) -> BehaviorState:
        """The state :meth:`to_json` wrote; ``ValueError`` when ``data`` is not one."""
        try:
            if not isinstance(data, Mapping) or not isinstance(data["definition"], Mapping):
                raise ValueError("expected a mapping with a definition")
            state = cls(
                definition=plain_copy(data["definition"]),
                in_alarm=_typed(data.get("in_alarm", False), bool),
                violation_id=_optional(data.get("violation_id"), str),
                since_ms=_optional(data.get("since_ms"), int),
                violating_streak=_typed(data.get("violating_streak", 0), int),
                normal_streak=_typed(data.get("normal_streak", 0), int),
                history=tuple(_datapoint(p) for p in _typed(data.get("history", []), list)),
                last_value=_optional(data.get("last_value"), dict),
                last_ms=_optional(data.get("last_ms"), int),
            )
            state.behavior()  # the definition must still make a behavior
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a behavior state: {exc}") from exc
        if state.in_alarm and (state.violation_id is None or state.since_ms is None):
            raise ValueError("not a behavior state: in alarm without a violation id and start")
        return state


def _typed(value: Any, kind: type) -> Any:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"expected {kind.__name__}, got {value!r}")
    return value


def _optional(value: Any, kind: type) -> Any:
    return None if value is None else _typed(value, kind)


def _datapoint(raw: Any) -> Datapoint:
    if not isinstance(raw, list) or len(raw) != 2:
        raise ValueError(f"expected [timestamp_ms, value], got {raw!r}")
    return Datapoint(_typed(raw[0], int), _typed(raw[1], dict))


def dump_states(states: Mapping[str, BehaviorState]) -> Dict[str, Any]:
    """Every state as one JSON document (what ``state_dir`` keeps)."""
    return {"version": STATE_VERSION, "behaviors": {name: s.to_json() for name, s in states.items()}}


def load_states(data: Any) -> Dict[str, BehaviorState]:
    """The states :func:`dump_states` wrote; ``ValueError`` when ``data`` is not such a document."""
    if not isinstance(data, Mapping) or data.get("version") != STATE_VERSION:
        raise ValueError(f"not a behavior state document of version {STATE_VERSION}")
    behaviors = data.get("behaviors")
    if not isinstance(behaviors, Mapping):
        raise ValueError("not a behavior state document: no behaviors")
    return {str(name): BehaviorState.from_json(s) for name, s in behaviors.items()}


def step(
    states: Mapping[str, BehaviorState],
    behaviors: Sequence[Behavior],
    values: Mapping[str, Dict[str, Any]],
    now_ms: int,
    new_id: Callable[[], str],
) -> Tuple[Dict[str, BehaviorState], List[Transition]]:
    """Advance every behavior by one round of ``values`` (cloud metric name -> MetricValue) taken at ``now_ms``.

    Returns the new states (one per behavior in ``behaviors``; states of removed behaviors are dropped) and the
    transitions, removed behaviors first, then in the order of ``behaviors``. ``new_id`` names a new violation.
    """
    transitions: List[Transition] = []
    current = {b.name for b in behaviors}
    for name, gone in states.items():
        if name not in current and gone.in_alarm:
            transitions.append(_invalidated(gone.behavior(), gone, now_ms))
    out: Dict[str, BehaviorState] = {}
    for behavior in behaviors:
        state = states.get(behavior.name)
        if state is not None and state.definition != plain_copy(behavior.raw):
            if state.in_alarm:
                transitions.append(_invalidated(state.behavior(), state, now_ms))
            state = None
        new_state, transition = _advance(behavior, state or BehaviorState.fresh(behavior), values, now_ms, new_id)
        out[behavior.name] = new_state
        if transition is not None:
            transitions.append(transition)
    return out, transitions


def _advance(
    behavior: Behavior,
    state: BehaviorState,
    values: Mapping[str, Dict[str, Any]],
    now_ms: int,
    new_id: Callable[[], str],
) -> Tuple[BehaviorState, Optional[Transition]]:
    value = values.get(behavior.metric)
    history = _window(behavior, state.history, value, now_ms) if value is not None else state.history
    verdict = violates(behavior, history, now_ms) if value is not None else None
    if verdict is None:  # the metric did not arrive (or not in the behavior's kind): no datapoint to count
        if state.in_alarm:
            last = state.last_ms if state.last_ms is not None else state.since_ms or now_ms
            if now_ms - last > NO_DATA_INVALIDATES_AFTER_MS:
                return BehaviorState.fresh(behavior), _invalidated(behavior, state, now_ms)
            return state, None  # the alarm holds, with its violation id: no event for a hiccup
        return replace(state, violating_streak=0, normal_streak=0), None
    judged = judged_value(behavior, history, now_ms)
    state = replace(state, history=history, last_value=plain_copy(value), last_ms=now_ms)
    criteria = behavior.criteria
    if verdict:
        state = replace(state, violating_streak=min(state.violating_streak + 1, MAX_STREAK), normal_streak=0)
        if not state.in_alarm and state.violating_streak >= criteria.consecutive_to_alarm:
            violation_id = new_id()
            state = replace(state, in_alarm=True, violation_id=violation_id, since_ms=now_ms)
            return state, Transition(behavior, EventType.IN_ALARM, violation_id, judged, now_ms, now_ms)
        return state, None
    state = replace(state, normal_streak=min(state.normal_streak + 1, MAX_STREAK), violating_streak=0)
    if state.in_alarm and state.normal_streak >= criteria.consecutive_to_clear:
        assert state.violation_id is not None and state.since_ms is not None
        transition = Transition(
            behavior, EventType.ALARM_CLEARED, state.violation_id, judged, now_ms, state.since_ms
        )
        return replace(state, in_alarm=False, violation_id=None, since_ms=None, normal_streak=0), transition
    return state, None


def _window(
    behavior: Behavior, history: Tuple[Datapoint, ...], value: Dict[str, Any], now_ms: int
) -> Tuple[Datapoint, ...]:
    """This round's datapoint, after those of ``(now - durationSeconds, now)`` for a summed metric."""
    duration = behavior.criteria.duration_seconds
    kept: Tuple[Datapoint, ...] = ()
    if duration is not None and behavior.metric in SUMMED_METRICS:
        start = now_ms - duration * 1000
        kept = tuple(p for p in history if start < p.timestamp_ms < now_ms)
    return (*kept, Datapoint(now_ms, plain_copy(value)))


def _invalidated(behavior: Behavior, state: BehaviorState, now_ms: int) -> Transition:
    assert state.violation_id is not None and state.since_ms is not None
    return Transition(
        behavior, EventType.ALARM_INVALIDATED, state.violation_id, None, now_ms, state.since_ms
    )

