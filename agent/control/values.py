"""Read back what the cloud stored for a thing and metric (``defender-agent values``).

:func:`fetch` pages through ``list_metric_values`` with boto3's paginator and
resumes from the last good page after throttling; the renderers are pure
functions of the fetched :class:`Datum` list.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import logging
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from agent.control.aws import RetryPolicy, paginate

log = logging.getLogger("agent.control.values")

VALUE_KINDS = ("number", "numbers", "strings", "cidrs", "ports", "count")
SPARKS = "▁▂▃▄▅▆▇█"
_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass(frozen=True)
class Datum:
    timestamp: dt.datetime  # timezone-aware
    kind: str  # one of VALUE_KINDS, or "unknown"
    value: Any


@dataclass(frozen=True)
class Query:
    thing: str
    metric: str
    start: dt.datetime
    end: dt.datetime
    dimension: Optional[str] = None
    not_in: bool = False
    max_items: Optional[int] = None


def parse_time(text: str, now: dt.datetime) -> dt.datetime:
    """``now``, a relative age (``90s``, ``15m``, ``2h``, ``1d``, ``1w``: that long before now) or ISO 8601.

    ISO times without an offset are local time. Raises ValueError with a usable message.
    """
    raw = text.strip()
    if raw.lower() == "now":
        return now
    match = _RELATIVE.match(raw)
    if match:
        return now - dt.timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
    iso = raw[:-1] + "+00:00" if raw.endswith(("Z", "z")) else raw
    try:
        value = dt.datetime.fromisoformat(iso)
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a relative time like 2h / 30m / 1d nor ISO 8601 like 2024-05-01T12:00:00Z"
        ) from None
    return value if value.tzinfo else value.astimezone()


def to_datum(item: Mapping[str, Any]) -> Datum:
    stamp = item["timestamp"]
    if not isinstance(stamp, dt.datetime):
        stamp = dt.datetime.fromtimestamp(float(stamp), tz=dt.timezone.utc)
    value = item.get("value") or {}
    for kind in VALUE_KINDS:
        if kind in value:
            return Datum(stamp, kind, value[kind])
    return Datum(stamp, "unknown", dict(value))


def fetch(client: Any, query: Query, policy: RetryPolicy, page_size: Optional[int] = None) -> List[Datum]:
    """All values of the query (up to ``max_items``), oldest first."""
    params: Dict[str, Any] = {
        "thingName": query.thing,
        "metricName": query.metric,
        "startTime": query.start,
        "endTime": query.end,
    }
    if query.dimension:
        params["dimensionName"] = query.dimension
        params["dimensionValueOperator"] = "NOT_IN" if query.not_in else "IN"
    items = paginate(client, "list_metric_values", "metricDatumList", params,
                     f"list values of {query.metric} for {query.thing}", policy, page_size, query.max_items)
    out = [to_datum(item) for item in items]
    out.sort(key=lambda d: d.timestamp)
    return out[: query.max_items] if query.max_items is not None else out


def format_number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, float):
        return format(value, ".15g")
    return str(value)


def format_value(datum: Datum) -> str:
    """A value for people, by its type: ``37.5``, ``12, 40.5``, ``sshd, mosquitto``, ``22, 443``."""
    kind, value = datum.kind, datum.value
    if kind in ("number", "count"):
        return format_number(value)
    if kind in ("numbers", "ports"):
        return ", ".join(format_number(v) for v in value) if value else "(empty)"
    if kind in ("strings", "cidrs"):
        return ", ".join(str(v) for v in value) if value else "(empty)"
    return json.dumps(value, sort_keys=True)


def sparkline(values: Sequence[float]) -> str:
    """One character per value, scaled between the series' minimum and maximum."""
    if not values:
        return ""
    low, high = min(values), max(values)
    if high == low:
        return SPARKS[len(SPARKS) // 2] * len(values)
    span = high - low
    return "".join(SPARKS[min(len(SPARKS) - 1, int((v - low) / span * len(SPARKS)))] for v in values)


def numeric_series(data: Sequence[Datum]) -> Optional[List[float]]:
    """The series as numbers when every value is a number or a count, else None."""
    if data and all(d.kind in ("number", "count") for d in data):
        return [float(d.value) for d in data]
    return None


def empty_message(query: Query, tz: Optional[dt.tzinfo] = None) -> str:
    return (
        f"No values for metric {query.metric} of thing {query.thing} between "
        f"{_local(query.start, tz)} and {_local(query.end, tz)}."
    )


def render_table(query: Query, data: Sequence[Datum], tz: Optional[dt.tzinfo] = None) -> str:
    """For a terminal: local time, the value rendered for its type, and a sparkline for numbers."""
    if not data:
        return empty_message(query, tz) + "\n"
    kinds = sorted({d.kind for d in data})
    lines = [
        f"{query.metric} on {query.thing}: {len(data)} value(s), "
        f"{_local(query.start, tz)} .. {_local(query.end, tz)} ({', '.join(kinds)})"
    ]
    rows: List[Tuple[str, str]] = [(_local(d.timestamp, tz), format_value(d)) for d in data]
    width = max(len("TIME"), *(len(r[0]) for r in rows))
    lines.append(f"{'TIME':<{width}}  VALUE")
    lines.extend(f"{when:<{width}}  {text}" for when, text in rows)
    series = numeric_series(data)
    if series is not None and len(series) > 1:
        lines.append(
            f"{sparkline(series)}  min {format_number(min(series))}  max {format_number(max(series))}"
        )
    return "\n".join(lines) + "\n"


def render_json(query: Query, data: Sequence[Datum]) -> str:
    """For scripts: one object, timestamps in UTC ISO 8601 and epoch milliseconds, values as stored."""
    document = {
        "thing": query.thing,
        "metric": query.metric,
        "start": _utc(query.start),
        "end": _utc(query.end),
        "values": [
            {
                "timestamp": _utc(d.timestamp),
                "epoch_ms": int(d.timestamp.timestamp() * 1000),
                "type": d.kind,
                "value": d.value,
            }
            for d in data
        ],
    }
    return json.dumps(document, indent=2) + "\n"


def render_csv(data: Sequence[Datum]) -> str:
    """For scripts: ``timestamp,type,value``; list items are separated by ``;``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["timestamp", "type", "value"])
    for d in data:
        if isinstance(d.value, list):
            text = ";".join(format_number(v) if d.kind in ("numbers", "ports") else str(v) for v in d.value)
        elif d.kind in ("number", "count"):
            text = format_number(d.value)
        else:
            text = json.dumps(d.value, sort_keys=True)
        writer.writerow([_utc(d.timestamp), d.kind, text])
    return buffer.getvalue()


def _utc(stamp: dt.datetime) -> str:
    return stamp.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _local(stamp: dt.datetime, tz: Optional[dt.tzinfo]) -> str:
    return stamp.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S %Z").rstrip()
