"""The textfile sink: a checked round and the agent's health as a file for node_exporter's textfile collector.

:func:`render` is pure: the round's values and the :class:`~agent.sinks.health.Health` become
Prometheus text (exposition format 0.0.4), every family a gauge named ``defender_agent_<metric>``
with one ``# HELP`` (description and unit from the catalog or the custom metric's config) and
one ``# TYPE`` line, and no timestamps (node_exporter skips a whole file that has one). Values by
the member of their MetricValue::

    count, number   defender_agent_aws_num_established_tcp_connections 3
    numbers         defender_agent_load_average{index="0"} 0.5   (one sample per item)
    strings         defender_agent_logged_in_users{value="pi"} 1 (one sample per distinct item)
    cidrs           defender_agent_aws_destination_ip_addresses{address="192.0.2.10"} 1
    ports           defender_agent_aws_listening_tcp_ports{port="22"} 1

An empty list keeps its HELP/TYPE lines and has no samples (node_exporter drops such a family;
the file still says what the metric is). :func:`write_atomic` is the sink's one write.

Names: every character outside ``[a-zA-Z0-9_]`` becomes ``_`` (colons are for recording
rules), and ``aws:`` device-side metrics keep their ``aws_``: Device Defender reserves the
prefix for its own metrics, so custom metric names reach it only by spelling ``aws_`` or
``aws-`` out, while without it the natural custom names ``all_bytes_in`` or
``listening_tcp_ports`` would take the device-side metrics' places. :func:`name_clashes` finds
the names that would still meet.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

from agent.catalog import DEVICE_METRICS, ValueKind
from agent.config.model import CustomMetricConfig
from agent.report.cloud import CheckedRound, MetricValue
from agent.schema import is_number
from agent.sinks.health import Health

PREFIX = "defender_agent_"
FILE_MODE = 0o644  # node_exporter runs as its own user and must read the file
TEMP_SUFFIX = ".tmp"  # node_exporter reads only `*.prom`; the temp file also starts with "."

_NOT_NAME = re.compile(r"[^a-zA-Z0-9_]")

# The agent's own families (sample names), in the order they are written after the round's metrics.
LAST_ROUND = PREFIX + "last_round_timestamp_seconds"
REPORT_ID = PREFIX + "report_id"
COLLECTOR_SUCCESS = PREFIX + "collector_success"
COLLECTOR_DURATION = PREFIX + "collector_duration_seconds"
OUTBOX_PENDING = PREFIX + "outbox_pending"
SINCE_ACCEPTED = PREFIX + "seconds_since_last_accepted_report"
SINK_DELIVERED = PREFIX + "sink_delivered_total"
SINK_FAILED = PREFIX + "sink_failed_total"
SINK_DROPPED = PREFIX + "sink_dropped_total"
SINK_PENDING = PREFIX + "sink_pending"

HEALTH_FAMILIES: Tuple[str, ...] = (
    LAST_ROUND, REPORT_ID, COLLECTOR_SUCCESS, COLLECTOR_DURATION, OUTBOX_PENDING, SINCE_ACCEPTED,
    SINK_DELIVERED, SINK_FAILED, SINK_DROPPED, SINK_PENDING,
)
_COUNTERS = (SINK_DELIVERED, SINK_FAILED, SINK_DROPPED)
# Also taken: a counter's family name without `_total` (OpenMetrics and prometheus_client name it so).
RESERVED_NAMES: Tuple[str, ...] = HEALTH_FAMILIES + tuple(name[: -len("_total")] for name in _COUNTERS)

_LIST_LABEL: Mapping[ValueKind, str] = {
    ValueKind.STRINGS: "value",
    ValueKind.CIDRS: "address",
    ValueKind.PORTS: "port",
}


class TextfileError(OSError):
    """The textfile could not be written (missing or read-only directory, disk full, ...).

    ``filename`` is the textfile's path, ``errno``/``strerror`` those of the failing call, and the
    original error is the ``__cause__``.
    """

    def __str__(self) -> str:
        return f"Cannot write textfile '{self.filename}': {self.strerror}"


def metric_name(cloud_name: str) -> str:
    """``aws:listening-tcp-ports`` -> ``defender_agent_aws_listening_tcp_ports``."""
    return PREFIX + _NOT_NAME.sub("_", cloud_name)


def name_clashes(names: Iterable[str]) -> List[Tuple[str, str]]:
    """Pairs (earlier, later) of names that become the same Prometheus name.

    ``names`` are cloud metric names (custom metrics, device-side ones may be among them).
    The device-side metrics and the agent's health families are always taken, before
    ``names``: a clash with one pairs that device-side metric's cloud name, or the health
    family's Prometheus name, with the name from ``names``.
    """
    owner: Dict[str, str] = {metric_name(name): name for name in DEVICE_METRICS}
    owner.update({name: name for name in RESERVED_NAMES})
    clashes: List[Tuple[str, str]] = []
    for name in dict.fromkeys(names):
        prom = metric_name(name)
        first = owner.setdefault(prom, name)
        if first != name:
            clashes.append((first, name))
    return clashes


@dataclass
class _Family:
    name: str
    help: str
    type: str = "gauge"
    samples: Dict[Tuple[Tuple[str, str], ...], str] = field(default_factory=dict)

    def add(self, value: Any, /, **labels: str) -> None:
        # The first of two samples with the same labels is kept: the format requires unique series.
        self.samples.setdefault(tuple(labels.items()), format_value(value))

    def text(self) -> str:
        name = self.name
        lines = [f"# HELP {name} {escape_help(self.help)}\n# TYPE {name} {self.type}\n"]
        for labels, value in self.samples.items():
            if len(labels) == 1:
                ((key, val),) = labels
                lines.append(f'{name}{{{key}="{escape_label(val)}"}} {value}\n')
            elif labels:
                inner = ",".join(f'{key}="{escape_label(val)}"' for key, val in labels)
                lines.append(f"{name}{{{inner}}} {value}\n")
            else:
                lines.append(f"{name} {value}\n")
        return "".join(lines)


def render(round: CheckedRound, health: Health, custom: Mapping[str, CustomMetricConfig]) -> str:
    """The whole file: the round's metrics by Prometheus name, then the agent's health families.

    A metric whose Prometheus name is taken (by a health family or an earlier metric of the
    round; :func:`name_clashes` rejects such configs at load) is left out. A value that does not
    fit its MetricValue member raises ``ValueError``.
    """
    taken = set(RESERVED_NAMES)
    metrics: Dict[str, _Family] = {}
    for cloud_name, value in round.values.items():
        name = metric_name(cloud_name)
        if name in taken:
            continue
        taken.add(name)
        metrics[name] = _metric_family(name, cloud_name, value, custom.get(cloud_name))
    families = [metrics[name] for name in sorted(metrics)]
    families.extend(_health_families(round, health))
    return "".join(family.text() for family in families)


def _metric_family(name: str, cloud_name: str, value: MetricValue, config: Optional[CustomMetricConfig]) -> _Family:
    family = _Family(name, _help(cloud_name, config))
    if len(value) != 1:
        raise ValueError(f"metric {cloud_name!r}: a MetricValue has one member, got {sorted(value)}")
    ((member, inner),) = value.items()
    try:
        kind = ValueKind(member)
    except ValueError:
        raise ValueError(f"metric {cloud_name!r}: unknown MetricValue member {member!r}") from None
    if kind in (ValueKind.COUNT, ValueKind.NUMBER):
        family.add(_number(cloud_name, inner))
        return family
    if not isinstance(inner, (list, tuple)):
        raise ValueError(f"metric {cloud_name!r}: {member} is a list, got {inner!r}")
    if kind is ValueKind.NUMBERS:
        for index, item in enumerate(inner):
            family.add(_number(cloud_name, item), index=str(index))
        return family
    label = _LIST_LABEL[kind]
    samples = family.samples
    for item in inner:
        if kind is ValueKind.PORTS and not _is_int(item):
            raise ValueError(f"metric {cloud_name!r}: a port is an integer, got {item!r}")
        if kind is not ValueKind.PORTS and not isinstance(item, str):
            raise ValueError(f"metric {cloud_name!r}: {member} holds strings, got {item!r}")
        samples.setdefault(((label, str(item)),), "1")  # family.add(1, label=item), without the call per item
    return family


def _help(cloud_name: str, config: Optional[CustomMetricConfig]) -> str:
    device = DEVICE_METRICS.get(cloud_name)
    unit: Optional[str]
    if device is not None:
        description, unit = device.description, device.unit
    elif config is not None:
        description, unit = config.description or f"Custom metric {cloud_name}", config.unit
    else:
        description, unit = f"Metric {cloud_name}", None
    return f"{description} (unit: {unit})" if unit else description


def _health_families(round: CheckedRound, health: Health) -> List[_Family]:
    last_round = _Family(LAST_ROUND, "When the last report round ran, in seconds since the epoch")
    last_round.add(round.timestamp_ms / 1000)
    report_id = _Family(REPORT_ID, "Report id of the last round")
    report_id.add(round.report_id)
    success = _Family(COLLECTOR_SUCCESS, "1 if the collector's last run gave data or no data, 0 if it failed or timed out")
    duration = _Family(COLLECTOR_DURATION, "Seconds the collector's last run took")
    for collector in health.collectors:
        success.add(1 if collector.ok else 0, collector=collector.name)
        if collector.duration is not None:
            duration.add(collector.duration, collector=collector.name)
    pending = _Family(OUTBOX_PENDING, "Reports and messages waiting in the outbox")
    pending.add(health.outbox_pending)
    since = _Family(SINCE_ACCEPTED, "Seconds since Device Defender last accepted a report; no sample before the first")
    if health.seconds_since_accepted is not None:
        since.add(health.seconds_since_accepted)
    delivered = _Family(SINK_DELIVERED, "Messages the sink delivered, since the outbox was created", "counter")
    failed = _Family(SINK_FAILED, "Deliveries of the sink that failed, since the outbox was created", "counter")
    dropped = _Family(SINK_DROPPED, "Messages the sink dropped by policy, since the outbox was created", "counter")
    sink_pending = _Family(SINK_PENDING, "Messages waiting in the outbox for the sink")
    for sink in health.sinks:
        labels = {"sink": sink.name, "type": sink.type}
        delivered.add(sink.delivered, **labels)
        failed.add(sink.failed, **labels)
        dropped.add(sink.dropped, **labels)
        sink_pending.add(sink.pending, **labels)
    return [last_round, report_id, success, duration, pending, since, delivered, failed, dropped, sink_pending]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(cloud_name: str, value: Any) -> Any:
    if not is_number(value):  # NaN and the infinities included: format_value writes them
        raise ValueError(f"metric {cloud_name!r}: expected a number, got {value!r}")
    return value


def format_value(value: Any) -> str:
    """A sample value as the format writes it: ``3``, ``12.5``, ``1e-06``, ``NaN``, ``+Inf``, ``-Inf``."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "+Inf" if value > 0 else "-Inf"
        return repr(value)
    raise ValueError(f"a sample value is a number, got {value!r}")


def _utf8(text: str) -> str:
    # Lone surrogates (undecodable bytes kept by surrogateescape) cannot be written as UTF-8.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def escape_help(text: str) -> str:
    """HELP text: backslash and line feed escaped (``\\\\``, ``\\n``), nothing else."""
    return _utf8(text).replace("\\", "\\\\").replace("\n", "\\n")


def escape_label(text: str) -> str:
    """A label value: backslash, double quote and line feed escaped."""
    if text.isascii() and "\\" not in text and '"' not in text and "\n" not in text:
        return text  # the common case (ports, addresses, names): nothing to escape, no surrogate possible
    return _utf8(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that a reader sees the old file or the new one, whole.

    The text goes to ``.<name>.<random>.tmp`` in the same directory, is flushed and fsynced,
    renamed over ``path`` (mode 0644) and the directory is fsynced. The temp file is removed
    on any failure. Raises :class:`TextfileError` naming ``path`` and the OS error.
    """
    data = text.encode("utf-8")
    directory = path.parent
    tmp: Optional[str] = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=directory)
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), FILE_MODE)
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
        tmp = None
        _fsync_directory(directory)
    except OSError as err:
        raise TextfileError(err.errno, err.strerror or str(err), str(path)) from err
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno != errno.EINVAL:  # a file system that cannot sync a directory: the rename stands
            raise
    finally:
        os.close(fd)
