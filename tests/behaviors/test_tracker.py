"""`step`: consecutive datapoints to alarm and to clear, invalidation, restarts and changed definitions."""

from __future__ import annotations

import itertools
import json
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import pytest

from agent.behaviors.model import Behavior
from agent.behaviors.tracker import (
    NO_DATA_INVALIDATES_AFTER_MS,
    BehaviorState,
    Transition,
    dump_states,
    load_states,
    step,
)
from tests.behaviors.helpers import behavior, from_raw

T0 = 1_700_000_000_000
PERIOD = 60_000
METRIC = "aws:num-established-tcp-connections"
Round = Optional[int]  # the connection count of one round; None: the metric did not arrive


def connections(to_alarm: Optional[int] = None, to_clear: Optional[int] = None, name: str = "Conns") -> Behavior:
    return behavior(METRIC, "less-than-equals", {"count": 3}, name=name, to_alarm=to_alarm, to_clear=to_clear)


class Run:
    """Rounds of `step` one PERIOD apart, with violation ids v1, v2, ..."""

    def __init__(self, *behaviors: Behavior) -> None:
        self.behaviors: List[Behavior] = list(behaviors)
        self.states: Dict[str, BehaviorState] = {}
        self.now = T0
        self.ids: Iterator[str] = (f"v{i}" for i in itertools.count(1))
        self.log: List[Transition] = []

    def round(self, values: Mapping[str, Dict[str, Any]]) -> List[Transition]:
        self.now += PERIOD
        self.states, transitions = step(self.states, self.behaviors, values, self.now, lambda: next(self.ids))
        self.log += transitions
        return transitions

    def counts(self, *rounds: Round) -> List[List[Tuple[str, str]]]:
        out = []
        for count in rounds:
            values = {} if count is None else {METRIC: {"count": count}}
            out.append([(t.kind, t.violation_id) for t in self.round(values)])
        return out


def kinds(run: Run) -> List[str]:
    return [t.kind for t in run.log]


def test_defaults_alarm_on_the_first_violation_and_clear_on_the_first_normal_datapoint() -> None:
    run = Run(connections())
    assert run.counts(1, 5, 5, 2, 2) == [[], [("in-alarm", "v1")], [], [("alarm-cleared", "v1")], []]


def test_consecutive_datapoints_to_alarm_and_to_clear() -> None:
    run = Run(connections(to_alarm=3, to_clear=2))
    assert run.counts(5, 5, 5, 5, 1, 5, 1, 1, 5) == [
        [], [], [("in-alarm", "v1")], [],
        [], [],  # one normal datapoint, then a violation: the clear streak starts over
        [], [("alarm-cleared", "v1")],
        [],  # a new violation streak begins at one
    ]
    alarm, cleared = run.log
    assert (alarm.time_ms, alarm.started_ms) == (T0 + 3 * PERIOD, T0 + 3 * PERIOD)
    assert (cleared.time_ms, cleared.started_ms) == (T0 + 8 * PERIOD, T0 + 3 * PERIOD)
    assert (alarm.value, cleared.value) == ({"count": 5}, {"count": 1})


def test_an_interrupted_violation_streak_does_not_alarm() -> None:
    run = Run(connections(to_alarm=3))
    run.counts(5, 5, 1, 5, 5, 2, 5, 5)
    assert kinds(run) == []
    run.counts(5)
    assert kinds(run) == ["in-alarm"]


def test_a_metric_missing_for_a_few_rounds_keeps_the_alarm_and_its_violation_id() -> None:
    """One failed collector run must not end an alarm and raise a new one (two events, two exec runs for a
    hiccup): AWS invalidates only after more than two days without metrics."""
    run = Run(connections())
    assert run.counts(5, None, None, 5) == [[("in-alarm", "v1")], [], [], []]
    assert run.states["Conns"].in_alarm and run.states["Conns"].violation_id == "v1"
    assert run.counts(1) == [[("alarm-cleared", "v1")]]


def test_a_metric_missing_for_more_than_two_days_invalidates_the_alarm() -> None:
    run = Run(connections())
    run.counts(5)
    last = run.now
    run.now = last + NO_DATA_INVALIDATES_AFTER_MS - PERIOD  # the next round is exactly two days on: not yet
    assert run.counts(None) == [[]]
    assert run.counts(None) == [[("alarm-invalidated", "v1")]]
    invalidated = run.log[1]
    assert (invalidated.value, invalidated.started_ms) == (None, T0 + PERIOD)
    assert invalidated.time_ms - last > NO_DATA_INVALIDATES_AFTER_MS
    assert run.counts(5) == [[("in-alarm", "v2")]]


def test_a_missing_metric_outside_an_alarm_resets_the_streak_silently() -> None:
    run = Run(connections(to_alarm=3))
    run.counts(5, 5, None, 5, 5)
    assert kinds(run) == []
    assert run.states["Conns"].violating_streak == 2
    run.counts(5)
    assert kinds(run) == ["in-alarm"]


def test_a_value_of_another_kind_counts_as_missing() -> None:
    run = Run(connections())
    run.counts(5)
    run.round({METRIC: {"ports": [22]}})
    assert kinds(run) == ["in-alarm"] and run.states["Conns"].violating_streak == 1
    run.now += NO_DATA_INVALIDATES_AFTER_MS
    run.round({METRIC: {"ports": [22]}})
    assert kinds(run) == ["in-alarm", "alarm-invalidated"]


def test_one_transition_per_change_never_one_per_round() -> None:
    run = Run(connections(to_alarm=2, to_clear=2))
    pattern = [5] * 30 + [1] * 30 + [5, 1] * 10 + [None] * 5 + [5] * 10
    run.counts(*pattern)
    assert kinds(run) == ["in-alarm", "alarm-cleared", "in-alarm"]


def test_an_alarm_survives_a_restart_without_a_second_in_alarm() -> None:
    run = Run(connections(to_clear=2))
    run.counts(1, 5)
    assert kinds(run) == ["in-alarm"]
    saved = json.dumps(dump_states(run.states))
    restarted = Run(connections(to_clear=2))
    restarted.states = load_states(json.loads(saved))
    restarted.now = run.now
    restarted.ids = iter(["never"])
    assert restarted.counts(5, 5, 1, 1) == [[], [], [], [("alarm-cleared", "v1")]]
    assert restarted.log[0].started_ms == T0 + 2 * PERIOD


def test_a_clear_streak_survives_a_restart() -> None:
    run = Run(connections(to_clear=2))
    run.counts(5, 1)
    restarted = Run(connections(to_clear=2))
    restarted.states = {name: BehaviorState.from_json(json.loads(json.dumps(s.to_json())))
                        for name, s in run.states.items()}
    assert restarted.counts(1) == [[("alarm-cleared", "v1")]]


def test_a_removed_behavior_in_alarm_is_invalidated() -> None:
    kept, removed = connections(name="Kept"), connections(name="Gone")
    run = Run(kept, removed)
    run.counts(5)
    assert [(t.behavior.name, t.kind) for t in run.log] == [("Kept", "in-alarm"), ("Gone", "in-alarm")]
    run.behaviors = [kept]
    assert run.counts(5) == [[("alarm-invalidated", "v2")]]
    assert run.log[-1].behavior == removed
    assert set(run.states) == {"Kept"}
    run.counts(5)
    assert len(run.log) == 3


def test_a_removed_behavior_outside_an_alarm_goes_silently() -> None:
    run = Run(connections(name="Gone"))
    run.counts(1)
    run.behaviors = []
    assert run.counts(5) == [[]]
    assert run.states == {}


def test_a_changed_definition_restarts_the_behavior() -> None:
    run = Run(connections())
    run.counts(5)
    stricter = behavior(METRIC, "less-than-equals", {"count": 2}, name="Conns", to_alarm=2)
    run.behaviors = [stricter]
    assert run.counts(5, 5) == [[("alarm-invalidated", "v1")], [("in-alarm", "v2")]]
    assert run.log[1].behavior == connections()  # the invalidation names the old definition
    assert run.log[2].behavior == stricter


def test_a_changed_definition_can_alarm_again_in_the_same_round() -> None:
    run = Run(connections())
    run.counts(5)
    run.behaviors = [behavior(METRIC, "less-than", {"count": 3}, name="Conns")]
    assert run.counts(5) == [[("alarm-invalidated", "v1"), ("in-alarm", "v2")]]


def test_the_same_definition_rebuilt_is_not_a_change() -> None:
    run = Run(connections())
    run.counts(5)
    run.behaviors = [from_raw(json.loads(json.dumps(dict(connections().raw))))]
    assert run.counts(5, 1) == [[], [("alarm-cleared", "v1")]]


def test_suppressed_alerts_are_still_evaluated_and_recorded() -> None:
    quiet = behavior(METRIC, "less-than-equals", {"count": 3}, name="Quiet", suppressAlerts=True)
    run = Run(quiet)
    run.counts(5)
    assert [(t.kind, t.behavior.suppress_alerts) for t in run.log] == [("in-alarm", True)]


def bytes_rounds(run: Run, counts: Sequence[int]) -> None:
    for count in counts:
        run.round({"aws:all-bytes-out": {"count": count}})


def test_a_duration_alarm_judges_the_window_sum_and_keeps_only_the_window() -> None:
    traffic = behavior("aws:all-bytes-out", "less-than-equals", {"count": 4096}, name="Traffic", duration=300)
    run = Run(traffic)
    bytes_rounds(run, [800] * 5)  # 4000 in five minutes
    assert kinds(run) == []
    bytes_rounds(run, [900])  # the first 800 left the window: 4100
    assert [(t.kind, t.value) for t in run.log] == [("in-alarm", {"count": 4100})]
    assert len(run.states["Traffic"].history) == 5
    bytes_rounds(run, [0] * 20)
    assert len(run.states["Traffic"].history) == 5
    assert [(t.kind, t.value) for t in run.log][1] == ("alarm-cleared", {"count": 3300})


def test_without_a_duration_only_the_newest_datapoint_is_kept() -> None:
    run = Run(connections())
    run.counts(1, 2, 3)
    assert [p.value for p in run.states["Conns"].history] == [{"count": 3}]
    assert run.states["Conns"].last_value == {"count": 3}


@pytest.mark.parametrize(
    "data",
    [
        None,
        {},
        {"definition": {"name": "x"}},
        {"definition": dict(connections().raw), "in_alarm": "yes"},
        {"definition": dict(connections().raw), "in_alarm": True},
        {"definition": dict(connections().raw), "history": [[1, 2, 3]]},
        {"definition": dict(connections().raw), "violating_streak": True},
    ],
)
def test_a_damaged_state_is_refused(data: Any) -> None:
    with pytest.raises(ValueError):
        BehaviorState.from_json(data)


def test_a_state_document_of_another_version_is_refused() -> None:
    with pytest.raises(ValueError):
        load_states({"version": 2, "behaviors": {}})
    assert load_states(dump_states({})) == {}
