"""The load-time checks of a ``behaviors`` list, as ValidateSecurityProfileBehaviors would make them, and more.

Every problem is recorded with its YAML path (``behaviors[1].criteria.value.ports[2]``); nothing stops at the
first. The limits are those of botocore's ``iot`` model (``Behaviors`` at most 100, ``BehaviorName``
``[a-zA-Z0-9:_-]+`` of 1..128, ``ConsecutiveDatapointsToAlarm``/``ToClear`` 1..10, ``Port`` 0..65535,
``Cidr`` ``[a-fA-F0-9:./]+`` of 2..43, ``UnsignedLong`` count, ``DimensionValueOperator`` ``IN | NOT_IN``); the
per-metric rules (operators, ``value`` member, ``durationSeconds``) are in :mod:`agent.behaviors.model`.

On top of what the service checks, a behavior that needs the cloud is refused with the reason:
``statisticalThreshold`` and ``mlDetectionConfig`` (fleet percentiles, ML Detect), a cloud-side metric,
``metricDimension`` (a ``TOPIC_FILTER`` scopes cloud-side message metrics to topics, and "can't be used with
custom metrics"), and a behavior without ``criteria`` (in the cloud it only retains or exports the metric).
``exportMetric`` is accepted (a profile pasted from the cloud has it) and means nothing on the device.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from agent.behaviors.model import (
    CLOUD_SIDE_METRICS,
    DEVICE_RULES,
    Behavior,
    MetricRule,
    Operator,
    metric_rule,
    parse_network,
)
from agent.catalog import MetricType, ValueKind
from agent.schema import Checker, describe_value, did_you_mean, is_number, join

MAX_BEHAVIORS = 100
_NAME = re.compile(r"[a-zA-Z0-9:_-]{1,128}")
_CIDR = re.compile(r"[a-fA-F0-9:./]{2,43}")

BEHAVIOR_KEYS = ("name", "metric", "metricDimension", "criteria", "suppressAlerts", "exportMetric")
CRITERIA_KEYS = (
    "comparisonOperator",
    "value",
    "durationSeconds",
    "consecutiveDatapointsToAlarm",
    "consecutiveDatapointsToClear",
    "statisticalThreshold",
    "mlDetectionConfig",
)
VALUE_KEYS = tuple(kind.value for kind in ValueKind)
DIMENSION_KEYS = ("dimensionName", "operator")

STATISTICAL_REASON = (
    "statisticalThreshold compares the device with a percentile of every device in the profile, "
    "which only the cloud sees; give a fixed value instead"
)
ML_REASON = "mlDetectionConfig is ML Detect, whose model AWS trains in the cloud from the fleet's data"
DIMENSION_REASON = (
    "metricDimension scopes a cloud-side message metric to MQTT topics (TOPIC_FILTER, the only dimension type) "
    "and cannot be used with device-side or custom metrics; nothing on the device can be scoped by it"
)
NO_CRITERIA_REASON = (
    "a behavior without criteria only retains or exports its metric in the cloud; there is nothing to evaluate"
)

_KIND_TEXT: Mapping[ValueKind, str] = {
    ValueKind.COUNT: "a non-negative whole number",
    ValueKind.NUMBER: "a number",
    ValueKind.NUMBERS: "a list of numbers",
    ValueKind.STRINGS: "a list of strings",
    ValueKind.PORTS: "a list of ports (0 to 65535)",
    ValueKind.CIDRS: 'a list of CIDRs like "10.0.0.0/8" or addresses',
}


def cloud_side_reason(metric: str) -> str:
    what = CLOUD_SIDE_METRICS[metric]
    return f"{metric} is a cloud-side metric ({what}): AWS IoT measures it, the device cannot"


def check_behaviors(
    raw: Any, path: str, checker: Checker, custom_types: Mapping[str, MetricType]
) -> Tuple[Behavior, ...]:
    """The behaviors of ``raw`` (the ``behaviors`` list) that passed every check; each problem goes to ``checker``.

    A behavior with a problem is left out of the result, so the caller decides from ``checker.problems``
    whether to start at all (it should not: exit 78).
    """
    if raw is None:
        return ()
    if not isinstance(raw, list):
        checker.problem(path, f"expected a list of behaviors, got {describe_value(raw)}")
        return ()
    if len(raw) > MAX_BEHAVIORS:
        checker.problem(path, f"has {len(raw)} behaviors; a security profile holds at most {MAX_BEHAVIORS}")
    out: List[Behavior] = []
    first_of: Dict[str, int] = {}
    for index, item in enumerate(raw):
        sub = join(path, index)
        before = len(checker.problems)
        _check_behavior(item, sub, checker, custom_types)
        if isinstance(item, Mapping) and isinstance(item.get("name"), str):
            name = item["name"]
            if name in first_of:
                checker.problem(join(sub, "name"), f"duplicate behavior name {name!r} (also {join(path, first_of[name])})")
            else:
                first_of[name] = index
        if len(checker.problems) == before:
            out.append(Behavior.from_raw(item))
    return tuple(out)


def validation_errors(behaviors: Sequence[Any], custom_types: Mapping[str, MetricType]) -> List[Tuple[str, str]]:
    """The same checks as ``(path, message)`` pairs, paths starting at ``behaviors`` (``behaviors[0].name``)."""
    checker = Checker("behaviors")
    check_behaviors(list(behaviors), "behaviors", checker, custom_types)
    return [(p.path, p.message) for p in checker.problems]


def device_support(behavior: Mapping[str, Any]) -> Optional[str]:
    """None when ``behavior`` (a behavior object from a security profile) can run on a device, else why not.

    Only what needs the cloud is named here; a custom metric is assumed declared (the load-time checks say
    otherwise), and shape errors are left to :func:`check_behaviors`.
    """
    criteria = behavior.get("criteria")
    metric = behavior.get("metric")
    if isinstance(metric, str) and metric in CLOUD_SIDE_METRICS:
        return cloud_side_reason(metric)
    if isinstance(metric, str) and metric.startswith("aws:") and metric not in DEVICE_RULES:
        return f"{metric} is not a device-side metric"
    if behavior.get("metricDimension") is not None:
        return DIMENSION_REASON
    if not isinstance(criteria, Mapping):
        return NO_CRITERIA_REASON
    if criteria.get("mlDetectionConfig") is not None:
        return ML_REASON
    if criteria.get("statisticalThreshold") is not None:
        return STATISTICAL_REASON
    return None


# -- one behavior ------------------------------------------------------------------------


def _check_behavior(item: Any, path: str, checker: Checker, custom_types: Mapping[str, MetricType]) -> None:
    if not isinstance(item, Mapping):
        checker.problem(path, f"expected a behavior (a mapping with name, metric and criteria), got {describe_value(item)}")
        return
    _unknown_keys(item, BEHAVIOR_KEYS, path, checker)
    _check_name(item.get("name"), join(path, "name"), checker)
    for key in ("suppressAlerts", "exportMetric"):
        if key in item and item[key] is not None and not isinstance(item[key], bool):
            checker.problem(join(path, key), f"expected true or false, got {describe_value(item[key])}")
    rule = _check_metric(item, path, checker, custom_types)
    if item.get("metricDimension") is not None:
        _check_dimension(item["metricDimension"], join(path, "metricDimension"), checker)
    criteria = item.get("criteria")
    if criteria is None:
        checker.problem(join(path, "criteria"), f"required key is missing: {NO_CRITERIA_REASON}")
        return
    if not isinstance(criteria, Mapping):
        checker.problem(join(path, "criteria"), f"expected a mapping, got {describe_value(criteria)}")
        return
    _check_criteria(criteria, join(path, "criteria"), checker, rule, item.get("metric"))


def _check_name(name: Any, path: str, checker: Checker) -> None:
    if name is None:
        checker.problem(path, "required key is missing (the behavior's name)")
    elif not isinstance(name, str):
        checker.problem(path, f"expected a string, got {describe_value(name)}")
    elif not _NAME.fullmatch(name):
        checker.problem(path, f"{name!r} is not a valid behavior name: 1 to 128 of a-z A-Z 0-9 : _ -")


def _check_metric(
    item: Mapping[str, Any], path: str, checker: Checker, custom_types: Mapping[str, MetricType]
) -> Optional[MetricRule]:
    metric = item.get("metric")
    sub = join(path, "metric")
    if metric is None:
        checker.problem(sub, "required key is missing (a device-side metric like aws:listening-tcp-ports, "
                             "or a declared custom metric)")
        return None
    if not isinstance(metric, str):
        checker.problem(sub, f"expected a metric name, got {describe_value(metric)}")
        return None
    if metric in CLOUD_SIDE_METRICS:
        checker.problem(sub, cloud_side_reason(metric))
        return None
    rule = metric_rule(metric, custom_types)
    if rule is not None:
        return rule
    if metric.startswith("aws:"):
        hint = did_you_mean(metric, sorted(DEVICE_RULES))
        checker.problem(sub, f"{metric!r} is not a device-side metric{hint}; they are: {', '.join(sorted(DEVICE_RULES))}")
        return None
    declared = sorted(custom_types)
    hint = did_you_mean(metric, declared + sorted(DEVICE_RULES))
    listed = f"declared custom metrics: {', '.join(declared)}" if declared else "no custom metric is declared"
    checker.problem(sub, f"{metric!r} is neither a device-side metric nor a declared custom metric{hint} ({listed})")
    return None


def _check_dimension(dimension: Any, path: str, checker: Checker) -> None:
    if not isinstance(dimension, Mapping):
        checker.problem(path, f"expected a mapping, got {describe_value(dimension)}")
        return
    _unknown_keys(dimension, DIMENSION_KEYS, path, checker)
    name = dimension.get("dimensionName")
    if name is None:
        checker.problem(join(path, "dimensionName"), "required key is missing")
    elif not isinstance(name, str) or not _NAME.fullmatch(name):
        checker.problem(join(path, "dimensionName"), f"{describe_value(name)} is not a valid dimension name: "
                                                     "1 to 128 of a-z A-Z 0-9 : _ -")
    operator = dimension.get("operator")
    if operator is not None and operator not in ("IN", "NOT_IN"):
        checker.problem(join(path, "operator"), f"expected IN or NOT_IN, got {describe_value(operator)}")
    checker.problem(path, DIMENSION_REASON)


def _check_criteria(
    criteria: Mapping[str, Any], path: str, checker: Checker, rule: Optional[MetricRule], metric: Any
) -> None:
    _unknown_keys(criteria, CRITERIA_KEYS, path, checker)
    for key in ("consecutiveDatapointsToAlarm", "consecutiveDatapointsToClear"):
        count = criteria.get(key)
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 10):
            checker.problem(join(path, key), f"expected a whole number from 1 to 10, got {describe_value(count)}")
    cloud_only = False
    if criteria.get("mlDetectionConfig") is not None:
        checker.problem(join(path, "mlDetectionConfig"), f"cannot be evaluated on the device: {ML_REASON}")
        cloud_only = True
    if criteria.get("statisticalThreshold") is not None:
        checker.problem(join(path, "statisticalThreshold"), f"cannot be evaluated on the device: {STATISTICAL_REASON}")
        cloud_only = True
    operator = _check_operator(criteria, path, checker, rule, metric, required=not cloud_only)
    if criteria.get("durationSeconds") is not None and not cloud_only:
        _check_duration(criteria["durationSeconds"], join(path, "durationSeconds"), checker, rule, metric)
    value = criteria.get("value")
    if value is None:
        if not cloud_only:
            member = f" ({rule.kind.value}: {_KIND_TEXT[rule.kind]})" if rule is not None else ""
            checker.problem(join(path, "value"), f"required key is missing: the value to compare with{member}")
        return
    _check_value(value, join(path, "value"), checker, rule, operator, metric)


def _check_operator(
    criteria: Mapping[str, Any], path: str, checker: Checker, rule: Optional[MetricRule], metric: Any, required: bool
) -> Optional[Operator]:
    sub = join(path, "comparisonOperator")
    raw = criteria.get("comparisonOperator")
    allowed = [op.value for op in rule.operators] if rule is not None else [op.value for op in Operator]
    if raw is None:
        if required:
            checker.problem(sub, f"required key is missing (one of {', '.join(allowed)})")
        return None
    if not isinstance(raw, str) or raw not in {op.value for op in Operator}:
        hint = did_you_mean(str(raw), [op.value for op in Operator])
        checker.problem(sub, f"expected one of {', '.join(allowed)}, got {describe_value(raw)}{hint}")
        return None
    operator = Operator(raw)
    if rule is not None and operator not in rule.operators:
        checker.problem(sub, f"{raw} does not apply to {metric}; use one of {', '.join(allowed)}")
        return None
    return operator


def _check_duration(duration: Any, path: str, checker: Checker, rule: Optional[MetricRule], metric: Any) -> None:
    if isinstance(duration, bool) or not isinstance(duration, int):
        checker.problem(path, f"expected a whole number of seconds, got {describe_value(duration)}")
        return
    if rule is None:
        return
    if not rule.durations:
        why = "it is judged per report" if metric in DEVICE_RULES else "the guide lists no durations for custom metrics"
        checker.problem(path, f"{metric} takes no durationSeconds ({why})")
    elif duration not in rule.durations:
        allowed = ", ".join(str(d) for d in rule.durations)
        checker.problem(path, f"must be one of {allowed} seconds for {metric}, got {duration}")


def _check_value(
    value: Any, path: str, checker: Checker, rule: Optional[MetricRule], operator: Optional[Operator], metric: Any
) -> None:
    if not isinstance(value, Mapping):
        checker.problem(path, f"expected a mapping with one of {', '.join(VALUE_KEYS)}, got {describe_value(value)}")
        return
    _unknown_keys(value, VALUE_KEYS, path, checker)
    present = [key for key in VALUE_KEYS if key in value and value[key] is not None]
    for key in present:
        _check_member(ValueKind(key), value[key], join(path, key), checker)
    if rule is None:
        return
    expected = rule.kind.value
    for key in present:
        if key != expected:
            checker.problem(join(path, key), f"{metric} compares with {expected} ({_KIND_TEXT[rule.kind]}), not {key}")
    if expected not in present:
        checker.problem(path, f"needs {expected} ({_KIND_TEXT[rule.kind]}) to compare with {metric}")


def _check_member(kind: ValueKind, member: Any, path: str, checker: Checker) -> None:
    if kind is ValueKind.COUNT:
        if isinstance(member, bool) or not isinstance(member, int) or member < 0:
            checker.problem(path, f"expected a non-negative whole number, got {describe_value(member)}")
        return
    if kind is ValueKind.NUMBER:
        if not is_number(member, finite=True):
            checker.problem(path, f"expected a number, got {describe_value(member)}")
        return
    if not isinstance(member, list):
        checker.problem(path, f"expected {_KIND_TEXT[kind]}, got {describe_value(member)}")
        return
    for index, item in enumerate(member):
        problem = _item_problem(kind, item)
        if problem:
            checker.problem(join(path, index), problem)


def _item_problem(kind: ValueKind, item: Any) -> str:
    if kind is ValueKind.PORTS:
        ok = not isinstance(item, bool) and isinstance(item, int) and 0 <= item <= 65535
        return "" if ok else f"expected a port from 0 to 65535, got {describe_value(item)}"
    if kind is ValueKind.NUMBERS:
        return "" if is_number(item, finite=True) else f"expected a number, got {describe_value(item)}"
    if kind is ValueKind.STRINGS:
        return "" if isinstance(item, str) else f"expected a string, got {describe_value(item)}"
    ok = isinstance(item, str) and _CIDR.fullmatch(item) is not None and parse_network(item) is not None
    return "" if ok else f'expected a CIDR like "10.0.0.0/8" or an IP address, got {describe_value(item)}'


def _unknown_keys(value: Mapping[str, Any], known: Sequence[str], path: str, checker: Checker) -> None:
    for key in value:
        if key not in known:
            checker.problem(join(path, key), f"unknown key{did_you_mean(str(key), known)}")
