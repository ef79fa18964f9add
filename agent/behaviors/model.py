"""A security-profile behavior as the agent evaluates it, and the per-metric rules a behavior must follow.

The behavior is the ``Behavior`` object of CreateSecurityProfile / DescribeSecurityProfile (camelCase, as
``aws iot describe-security-profile`` prints it); :class:`Behavior` is its checked, typed form and keeps the
object exactly as configured in ``raw`` (the ``behavior`` member of a violation event).

The rules, as data (sources: the developer guide's "Device-side metrics" and "Cloud-side metrics" pages and the
``BehaviorCriteria`` shape of the ``iot`` API model in botocore; see agent/behaviors/check.py for their use):

- a device-side metric (:data:`agent.catalog.DEVICE_METRICS`) takes the operators, the ``value`` member and the
  ``durationSeconds`` listed there;
- a custom metric takes what :data:`CUSTOM_RULES` lists for its declared type (the API reference's
  ``comparisonOperator``: ``string-list`` and ``number-list``: ``in-set | not-in-set``; ``ip-address-list``:
  ``in-cidr-set | not-in-cidr-set``; ``number``: the four numeric operators), and no ``durationSeconds``
  ("Cannot be used with list-based metric datatypes"; the guide lists no durations for custom metrics);
- a cloud-side metric (:data:`CLOUD_SIDE_METRICS`) is measured by AWS IoT, not by the device: refused.
"""

from __future__ import annotations

import copy
import ipaddress
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple, Union

from agent.catalog import DEVICE_METRICS, NETWORK_CLOUD_NAMES, NUMERIC_OPERATORS, MetricType, ValueKind
from agent.schema import TextEnum


class Operator(TextEnum):
    """``comparisonOperator`` (the ``ComparisonOperator`` enum of the API)."""

    LESS_THAN = "less-than"
    LESS_THAN_EQUALS = "less-than-equals"
    GREATER_THAN = "greater-than"
    GREATER_THAN_EQUALS = "greater-than-equals"
    IN_CIDR_SET = "in-cidr-set"
    NOT_IN_CIDR_SET = "not-in-cidr-set"
    IN_PORT_SET = "in-port-set"
    NOT_IN_PORT_SET = "not-in-port-set"
    IN_SET = "in-set"
    NOT_IN_SET = "not-in-set"


NUMERIC = frozenset(Operator(op) for op in NUMERIC_OPERATORS)
SET_OPERATORS = frozenset(op for op in Operator if op not in NUMERIC)
NEGATED = frozenset({Operator.NOT_IN_CIDR_SET, Operator.NOT_IN_PORT_SET, Operator.NOT_IN_SET})


@dataclass(frozen=True)
class Criteria:
    """``criteria``: what is normal for the metric. ``value`` is a MetricValue with one member (``{"count": 5}``)."""

    comparison_operator: Operator
    value: Optional[Dict[str, Any]]
    duration_seconds: Optional[int] = None
    consecutive_to_alarm: int = 1
    consecutive_to_clear: int = 1


@dataclass(frozen=True)
class Behavior:
    """One checked behavior. ``raw`` is the behavior object exactly as configured (camelCase)."""

    name: str
    metric: str
    criteria: Criteria
    suppress_alerts: bool = False
    raw: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any]) -> Behavior:
        """The typed form of a behavior object that has passed the checks (or was stored after passing them).

        Raises ``ValueError`` (or ``KeyError``/``TypeError``) when ``raw`` lacks what a checked behavior has.
        """
        criteria = raw["criteria"]
        value = criteria.get("value")
        return cls(
            name=str(raw["name"]),
            metric=str(raw["metric"]),
            criteria=Criteria(
                comparison_operator=Operator(criteria["comparisonOperator"]),
                value={k: copy.deepcopy(v) for k, v in value.items() if v is not None} if value is not None else None,
                duration_seconds=_optional_int(criteria.get("durationSeconds")),
                consecutive_to_alarm=_optional_int(criteria.get("consecutiveDatapointsToAlarm")) or 1,
                consecutive_to_clear=_optional_int(criteria.get("consecutiveDatapointsToClear")) or 1,
            ),
            suppress_alerts=bool(raw.get("suppressAlerts") or False),
            raw=plain_copy(raw),
        )


def _optional_int(value: Any) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected a whole number, got {value!r}")
    return value


def plain_copy(value: Any) -> Any:
    """A deep copy made of plain dicts and lists (what the YAML or JSON loader gave, detached from it)."""
    if isinstance(value, Mapping):
        return {str(k): plain_copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_copy(v) for v in value]
    return value


@dataclass(frozen=True)
class MetricRule:
    """What a behavior on one metric may say: its operators, the ``value`` member, the allowed durations."""

    operators: Tuple[Operator, ...]
    kind: ValueKind
    durations: Tuple[int, ...] = ()


# A custom metric's declared type -> its rule (the API reference's `comparisonOperator`; agent.catalog's
# CUSTOM_VALUE_KIND for the member its values and a behavior's `value` use).
CUSTOM_RULES: Mapping[MetricType, MetricRule] = {
    MetricType.NUMBER: MetricRule(tuple(Operator(op) for op in NUMERIC_OPERATORS), ValueKind.NUMBER),
    MetricType.NUMBER_LIST: MetricRule((Operator.IN_SET, Operator.NOT_IN_SET), ValueKind.NUMBERS),
    MetricType.STRING_LIST: MetricRule((Operator.IN_SET, Operator.NOT_IN_SET), ValueKind.STRINGS),
    MetricType.IP_ADDRESS_LIST: MetricRule((Operator.IN_CIDR_SET, Operator.NOT_IN_CIDR_SET), ValueKind.CIDRS),
}

DEVICE_RULES: Mapping[str, MetricRule] = {
    name: MetricRule(tuple(Operator(op) for op in m.operators), m.kind, tuple(m.durations))
    for name, m in DEVICE_METRICS.items()
}

# The metrics whose datapoints are deltas, summed over `durationSeconds` ("Device-side metrics": the number of
# bytes or packets "during a given time period"). Other metrics with a duration are judged by their newest datapoint.
SUMMED_METRICS = frozenset(NETWORK_CLOUD_NAMES.values())

# Cloud-side metrics ("Cloud-side metrics"): AWS IoT measures them at its end; a device never sees them.
CLOUD_SIDE_METRICS: Mapping[str, str] = {
    "aws:message-byte-size": "the size of each message as AWS IoT receives it",
    "aws:num-messages-received": "the messages AWS IoT sends to the device",
    "aws:num-messages-sent": "the messages AWS IoT receives from the device",
    "aws:source-ip-address": "the address AWS IoT sees the connection come from",
    "aws:num-authorization-failures": "the requests AWS IoT refuses",
    "aws:num-connection-attempts": "the connection attempts AWS IoT receives",
    "aws:num-disconnects": "the disconnections AWS IoT records",
    "aws:disconnect-duration": "how long AWS IoT has not seen the device connected",
}


def metric_rule(metric: str, custom_types: Mapping[str, MetricType]) -> Optional[MetricRule]:
    """The rule for ``metric`` (a device-side metric or a declared custom metric); None when it is neither."""
    rule = DEVICE_RULES.get(metric)
    if rule is not None:
        return rule
    mtype = custom_types.get(metric)
    return CUSTOM_RULES[mtype] if mtype is not None else None


Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


def parse_network(text: str) -> Optional[Network]:
    """``"10.0.0.0/8"`` or ``"10.1.2.3"`` (one address) as a network; None when it is neither.

    Host bits may be set (``"10.1.2.3/8"`` means ``10.0.0.0/8``): the service's ``Cidr`` pattern allows it.
    """
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None
