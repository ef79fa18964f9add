"""A report's values under their cloud names, in ``MetricValue`` form: the checked sample every sink reads.

Device Defender stores each device-side metric of a report under its ``aws:`` name
("Device-side metrics") and each custom metric under its own name, as a
``MetricValue`` with one member (``{"count": 3}``, ``{"ports": [22, 8883]}``,
``{"cidrs": ["192.0.2.1"]}``, ``{"number": 12.5}``, ``{"numbers": [...]}``,
``{"strings": [...]}``; ListMetricValues in the API reference). :func:`cloud_values`
derives exactly that from an encoded report document, so the flat document, the
textfile, the on-device behaviors and the emulator see what the service would see,
after the encoder's checks (a custom value the encoder dropped is not there either).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

from agent.catalog import (
    CUSTOM_VALUE_KIND,
    DEVICE_METRICS,
    NETWORK_CLOUD_NAMES,
    STANDARD_CLOUD_NAMES,
    KeyNames,
    MetricType,
    ValueKind,
)
from agent.report import rules
from agent.report.document import key_style, to_long

MetricValue = Dict[str, Any]  # exactly one member, named by agent.catalog.ValueKind


def _by_kind(standard: str) -> Mapping[ValueKind, str]:
    """The device-side metrics the catalog derives from a standard metric, by the kind of their value
    (``listening_tcp_ports``: ``PORTS`` aws:listening-tcp-ports, ``COUNT`` aws:num-listening-tcp-ports)."""
    return {DEVICE_METRICS[cloud].kind: cloud for cloud in STANDARD_CLOUD_NAMES[standard]}


_LISTENING = {standard: _by_kind(standard) for standard in ("listening_tcp_ports", "listening_udp_ports")}
_CONNECTIONS = _by_kind("tcp_connections")


@dataclass(frozen=True)
class CheckedRound:
    """One report round after the encoder's checks: what the sinks and the behaviors receive.

    ``values`` maps a cloud metric name (``aws:...`` or a custom metric's name) to its MetricValue,
    device-side metrics first (in the order of :func:`standard_values`), then custom metrics by name.
    ``custom`` names the custom metrics among them, with their declared type.
    """

    thing_name: str
    report_id: int
    timestamp_ms: int
    values: Mapping[str, MetricValue] = field(default_factory=dict)
    custom: Mapping[str, MetricType] = field(default_factory=dict)


def plain(value: MetricValue) -> Any:
    """The value without its MetricValue member name: ``{"count": 3}`` -> ``3``."""
    ((_, inner),) = value.items()
    return inner


def cloud_values(document: Mapping[str, Any], custom_types: Mapping[str, MetricType],
                 checked: bool = False) -> Dict[str, MetricValue]:
    """Every value of a long-key report document under its cloud name (device-side first, then custom).

    ``checked``: the document is the encoder's own (every value already passed the rules), so they are
    not checked again; a document from outside (the emulator's) is, and what breaks a rule is left out."""
    out: Dict[str, MetricValue] = {}
    metrics = document.get("metrics")
    if isinstance(metrics, Mapping):
        out.update(standard_values(metrics, checked))
    custom = document.get("custom_metrics")
    if isinstance(custom, Mapping):
        for name in sorted(custom):
            value = custom_value(custom[name], custom_types.get(name), checked)
            if value is not None:
                out[name] = value
    return out


def custom_value(raw: Any, mtype: Optional[MetricType], checked: bool = False) -> Optional[MetricValue]:
    """``[{"number": 42}]`` of a custom metric of type ``mtype`` -> ``{"number": 42}``; None when it does not fit."""
    if mtype is None or not isinstance(raw, list) or len(raw) != 1:
        return None
    entry = raw[0]
    if not isinstance(entry, Mapping) or len(entry) != 1:
        return None
    ((key, value),) = entry.items()
    if key != mtype.value_key or (not checked and rules.check_value(value, mtype) is not None):
        return None
    kind = CUSTOM_VALUE_KIND[mtype].value
    return {kind: value if mtype is MetricType.NUMBER else list(value)}


def standard_values(metrics: Mapping[str, Any], checked: bool = False) -> List[Tuple[str, MetricValue]]:
    """The device-side metrics of a long-key ``metrics`` object under their cloud names (``checked``: as
    :func:`cloud_values`)."""
    out: List[Tuple[str, MetricValue]] = []
    for standard, names in _LISTENING.items():
        listening = metrics.get(standard)
        if isinstance(listening, Mapping):
            if checked:  # the encoder's own items: each a dict with an int port
                ports = [p["port"] for p in listening["ports"]]
            else:
                ports = [p.get("port") for p in listening.get("ports") or () if isinstance(p, Mapping)]
                ports = [p for p in ports if isinstance(p, int)]
            total = listening.get("total")
            out.append((names[ValueKind.PORTS], {"ports": ports}))
            out.append((names[ValueKind.COUNT], {"count": total if isinstance(total, int) else len(ports)}))
    tcp = metrics.get("tcp_connections")
    established = tcp.get("established_connections") if isinstance(tcp, Mapping) else None
    if isinstance(established, Mapping):
        total = established.get("total")
        if checked:  # the encoder's own items: each a dict with a checked remote_addr
            conns = established["connections"]
            addrs = sorted({_split_addr(c["remote_addr"]) for c in conns})
        else:
            conns = [c for c in established.get("connections") or () if isinstance(c, Mapping)]
            addrs = sorted({remote_ip(c.get("remote_addr")) for c in conns} - {""})
        out.append((_CONNECTIONS[ValueKind.COUNT], {"count": total if isinstance(total, int) else len(conns)}))
        out.append((_CONNECTIONS[ValueKind.CIDRS], {"cidrs": addrs}))
    stats = metrics.get("network_stats")
    if isinstance(stats, Mapping):
        for field_name, cloud_name in NETWORK_CLOUD_NAMES.items():
            if isinstance(stats.get(field_name), int):
                out.append((cloud_name, {"count": stats[field_name]}))
    return out


def _split_addr(addr: str) -> str:
    """:func:`remote_ip` of an address the encoder checked already."""
    return addr[1:].split("]", 1)[0] if addr.startswith("[") else addr.rpartition(":")[0]


def remote_ip(addr: Any) -> str:
    """``"192.0.2.1:443"`` -> ``"192.0.2.1"``, ``"[2001:db8::1]:443"`` -> ``"2001:db8::1"``; "" when invalid."""
    if not isinstance(addr, str) or rules.check_remote_addr(addr):
        return ""
    if addr.startswith("["):
        return addr[1:].split("]", 1)[0]
    return addr.rpartition(":")[0]


def checked_round(thing_name: str, document: Mapping[str, Any], report_id: int, timestamp_ms: int,
                  custom_types: Mapping[str, MetricType]) -> CheckedRound:
    """The round as every sink sees it, from the encoded report's document (long or short key names)."""
    long_doc = to_long(document) if key_style(document) is KeyNames.SHORT else document
    values = cloud_values(long_doc, custom_types, checked=True)  # the encoder's document: checked already
    return CheckedRound(thing_name, report_id, timestamp_ms, values,
                        {name: custom_types[name] for name in values if name in custom_types})
