"""Behaviors for the tests, built through the load-time checks so that tests use what the agent would."""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

from agent.behaviors.check import check_behaviors
from agent.behaviors.model import Behavior
from agent.catalog import MetricType
from agent.schema import Checker

CUSTOM: Mapping[str, MetricType] = {
    "cpu_usage": MetricType.NUMBER,
    "core_load": MetricType.NUMBER_LIST,
    "services": MetricType.STRING_LIST,
    "peers": MetricType.IP_ADDRESS_LIST,
}


def behavior(
    metric: str,
    operator: str,
    value: Dict[str, Any],
    *,
    name: str = "B",
    duration: Optional[int] = None,
    to_alarm: Optional[int] = None,
    to_clear: Optional[int] = None,
    **extra: Any,
) -> Behavior:
    criteria: Dict[str, Any] = {"comparisonOperator": operator, "value": value}
    if duration is not None:
        criteria["durationSeconds"] = duration
    if to_alarm is not None:
        criteria["consecutiveDatapointsToAlarm"] = to_alarm
    if to_clear is not None:
        criteria["consecutiveDatapointsToClear"] = to_clear
    return from_raw({"name": name, "metric": metric, "criteria": criteria, **extra})


def from_raw(raw: Mapping[str, Any]) -> Behavior:
    checker = Checker("agent.yaml")
    (checked,) = check_behaviors([dict(raw)], "behaviors", checker, CUSTOM) or (None,)
    assert not checker.problems, [str(p) for p in checker.problems]
    assert checked is not None
    return checked
