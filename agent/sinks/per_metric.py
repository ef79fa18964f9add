"""The `per-metric` document of a topic sink: one small message per numeric metric per round.

Made for ONE AWS IoT rule whose ``cloudwatchMetric`` action takes the thing name and the metric
from the topic (``${topic(N)}``), since that action takes one metric name and value per action
and no dimensions (docs/SINKS.md, "CloudWatch per gateway (per-metric)"). On
``dt/gateways/gw-1/metric/aws:all-bytes-out``::

    {"thing_name":"gw-1","report_id":17,"timestamp":1764590400000,"metric":"aws:all-bytes-out",
     "value":1234,"unit":"Bytes"}

``timestamp`` is the round's time in epoch milliseconds (as in the flat document), ``metric``
the cloud name (``aws:...`` or the custom metric's own), ``value`` a number, ``unit`` a
CloudWatch StandardUnit (:data:`STANDARD_UNITS`, the MetricDatum ``Unit`` values of the
CloudWatch API reference). Numbers and counts go as they are; every list metric (ports,
addresses, number-list, string-list, ip-address-list) goes as its item count, unit ``Count``,
except that a ports list whose ``aws:num-listening-...-ports`` twin is in the round is not sent
at all: the twin is the same number (the true count, also when the encoder capped the list),
and CloudWatch bills every metric name per gateway. ``aws:destination-ip-addresses`` goes
as the distinct remote addresses among the connections the report carries. A metric with no
value this round sends nothing.
"""

from __future__ import annotations

import json
from typing import Dict, List, Mapping, Optional, Tuple

from agent.catalog import DEVICE_METRICS, STANDARD_CLOUD_NAMES, ValueKind
from agent.report.cloud import CheckedRound

# CloudWatch's StandardUnit (API reference, MetricDatum "Unit"; botocore's cloudwatch model agrees,
# tests/sinks/test_per_metric.py compares them).
STANDARD_UNITS = (
    "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes", "Terabytes",
    "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count", "Bytes/Second",
    "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second", "Terabytes/Second", "Bits/Second",
    "Kilobits/Second", "Megabits/Second", "Gigabits/Second", "Terabits/Second", "Count/Second", "None",
)
_BY_LOWER = {unit.lower(): unit for unit in STANDARD_UNITS}
# Unit words of the catalog (and likely ones of a custom metric) that count things.
COUNT_WORDS = frozenset({"count", "packets", "connections", "ports", "addresses", "processes", "descriptors",
                         "collectors", "items", "names", "users", "peers", "files", "errors"})
LIST_KINDS = frozenset({ValueKind.PORTS, ValueKind.CIDRS, ValueKind.NUMBERS, ValueKind.STRINGS})
# aws:listening-tcp-ports -> aws:num-listening-tcp-ports: the same number, the true one when the list was capped
TRUE_COUNT_OF: Mapping[str, str] = {
    next(n for n in names if DEVICE_METRICS[n].kind is ValueKind.PORTS):
        next(n for n in names if DEVICE_METRICS[n].kind is ValueKind.COUNT)
    for names in STANDARD_CLOUD_NAMES.values()
    if any(DEVICE_METRICS[n].kind is ValueKind.PORTS for n in names)
}


def standard_unit(unit: Optional[str]) -> str:
    """A metric's unit word (the catalog's, or a custom metric's ``unit``) as a CloudWatch StandardUnit:
    a StandardUnit name in any case as itself, a word that counts things ``Count``, anything else ``None``."""
    word = (unit or "").strip().lower()
    if word in _BY_LOWER:
        return _BY_LOWER[word]
    return "Count" if word in COUNT_WORDS else "None"


def metric_units(custom_units: Mapping[str, Optional[str]]) -> Dict[str, str]:
    """The StandardUnit of every metric a round can hold, by cloud name (lists are ``Count`` whatever the unit:
    their value is an item count). ``custom_units``: custom metric name -> its configured ``unit``."""
    out = {name: "Count" if m.kind in LIST_KINDS else standard_unit(m.unit) for name, m in DEVICE_METRICS.items()}
    out.update({name: standard_unit(unit) for name, unit in custom_units.items()})
    return out


def numeric_values(checked: CheckedRound) -> List[Tuple[str, float, bool]]:
    """(cloud name, number, whether it is a list's item count) of every metric of the round, in its order."""
    out: List[Tuple[str, float, bool]] = []
    for name, value in checked.values.items():
        ((kind, inner),) = value.items()
        if kind in LIST_KINDS:
            if TRUE_COUNT_OF.get(name) in checked.values:
                continue  # its aws:num-listening-...-ports twin carries the same (true) count
            out.append((name, len(inner), True))
        elif isinstance(inner, (int, float)) and not isinstance(inner, bool):
            out.append((name, inner, False))
    return out


def per_metric_documents(checked: CheckedRound, units: Mapping[str, str]) -> List[Dict[str, object]]:
    """One document per metric with a value this round (``units`` from :func:`metric_units`)."""
    return [
        {"thing_name": checked.thing_name, "report_id": checked.report_id, "timestamp": checked.timestamp_ms,
         "metric": name, "value": number, "unit": "Count" if is_list else units.get(name, "None")}
        for name, number, is_list in numeric_values(checked)
    ]


def encode_per_metric(checked: CheckedRound, units: Mapping[str, str]) -> List[Tuple[str, bytes]]:
    """(metric name, compact JSON) of each message of the round."""
    return [(str(doc["metric"]), json.dumps(doc, separators=(",", ":"), allow_nan=False).encode("utf-8"))
            for doc in per_metric_documents(checked, units)]
