"""Does a device's datapoint violate a behavior? Pure functions of the behavior and the metric's datapoints.

A behavior states what is NORMAL, and a violation is a datapoint that does not satisfy it. The sources:

- Behavior ``criteria`` in the API reference (botocore's ``iot`` model, and the page below): "The criteria that determine if a
  device is behaving normally in regard to the ``metric``."
- Developer guide, Detect concepts, *behavior*: "Any device action that doesn't match a defined behavior
  statement triggers an alert."
- The guide's own examples read that way: "Max TCP Ports" is ``aws:num-listening-tcp-ports``
  ``less-than-equals`` 5; "Listening TCP Ports" is ``in-port-set`` ``[443, 80]`` (the allowed ports, "formerly
  referred to as whitelisted"); ``not-in-cidr-set`` lists denied CIDRs.

So ``greater-than 90`` on ``cpu_usage`` says "normal is above 90": a datapoint of 95 is fine and 40 violates.
For the set operators: ``in-*-set`` is violated when some element of the datapoint (a listening port, a
destination address, a string, a number) is outside the set; ``not-in-*-set`` when some element is inside it.
An address is in a CIDR set when a CIDR of the set contains it (``ipaddress``); an IPv4-mapped IPv6 address
(``::ffff:192.0.2.1``) also counts as its IPv4 address.

``durationSeconds`` on a byte or packet metric (:data:`agent.behaviors.model.SUMMED_METRICS`): the value judged
is the sum of the ``count`` of the datapoints whose time is inside the window ``(now - duration, now]`` (each
datapoint is a delta for one report period: the developer guide's "Device-side metrics",
https://docs.aws.amazon.com/iot-device-defender/latest/devguide/detect-device-side-metrics.html, gives these
metrics durations of 300 to 3600 s). On other metrics that take a duration (the listening-port counts) the
newest datapoint is judged: a sum of port counts means nothing. The API reference's ``Behavior``:
https://docs.aws.amazon.com/iot/latest/apireference/API_Behavior.html.
"""

from __future__ import annotations

import ipaddress
import operator as op
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence

from agent.behaviors.model import NEGATED, NUMERIC, SUMMED_METRICS, Behavior, Network, Operator, parse_network
from agent.schema import is_number


@dataclass(frozen=True)
class Datapoint:
    """One value of a metric (a MetricValue: ``{"count": 3}``) at a time (epoch milliseconds)."""

    timestamp_ms: int
    value: Dict[str, Any]


_COMPARE: Mapping[Operator, Callable[[Any, Any], bool]] = {
    Operator.LESS_THAN: op.lt,
    Operator.LESS_THAN_EQUALS: op.le,
    Operator.GREATER_THAN: op.gt,
    Operator.GREATER_THAN_EQUALS: op.ge,
}


def violates(behavior: Behavior, history: Sequence[Datapoint], now_ms: int) -> Optional[bool]:
    """True when the metric's value at ``now_ms`` violates ``behavior``, False when it is normal, None when
    it cannot be judged (no datapoint at or before ``now_ms``, inside the window, or of the behavior's kind)."""
    value = judged_value(behavior, history, now_ms)
    if value is None:
        return None
    return violates_value(behavior, value)


def judged_value(behavior: Behavior, history: Sequence[Datapoint], now_ms: int) -> Optional[Dict[str, Any]]:
    """The MetricValue :func:`violates` judges: the newest datapoint's, or the window's sum (``{"count": n}``)."""
    points = [p for p in history if p.timestamp_ms <= now_ms]
    if not points:
        return None
    duration = behavior.criteria.duration_seconds
    if duration is None or behavior.metric not in SUMMED_METRICS:
        return max(points, key=lambda p: p.timestamp_ms).value
    start = now_ms - duration * 1000
    total = 0
    inside = [p for p in points if p.timestamp_ms > start]
    if not inside:
        return None
    for point in inside:
        count = point.value.get("count")
        if isinstance(count, bool) or not isinstance(count, int):
            return None
        total += count
    return {"count": total}


def violates_value(behavior: Behavior, value: Mapping[str, Any]) -> Optional[bool]:
    """Whether one MetricValue violates the behavior's criteria; None when the value is not of its kind."""
    criteria = behavior.criteria
    if not criteria.value:
        return None
    member, threshold = next(iter(criteria.value.items()))
    measured = value.get(member)
    if measured is None:
        return None
    operator = criteria.comparison_operator
    if operator in NUMERIC:
        if not is_number(measured):
            return None
        return not _COMPARE[operator](measured, threshold)
    if not isinstance(measured, list):
        return None
    if operator in (Operator.IN_CIDR_SET, Operator.NOT_IN_CIDR_SET):
        networks = [n for n in (parse_network(str(c)) for c in threshold) if n is not None]
        inside = [_in_networks(str(item), networks) for item in measured]
    else:
        allowed = set(threshold)
        inside = [item in allowed for item in measured]
    if operator in NEGATED:
        return any(inside)
    return not all(inside)


def _in_networks(item: str, networks: Iterable[Network]) -> bool:
    candidates: List[Network] = []
    parsed = parse_network(item)
    if parsed is None:
        return False
    candidates.append(parsed)
    if isinstance(parsed, ipaddress.IPv6Network) and parsed.prefixlen == 128:
        mapped = parsed.network_address.ipv4_mapped
        if mapped is not None:
            candidates.append(ipaddress.IPv4Network(mapped))
    return any(
        candidate.version == network.version and candidate.subnet_of(network)  # type: ignore[arg-type]
        for candidate in candidates
        for network in networks
    )
