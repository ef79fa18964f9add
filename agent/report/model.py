"""Typed values of a Device Defender report, independent of key names and encoding.

Collectors return these inside :class:`agent.collectors.base.Sample`; the encoder
turns them into a document with long or short key names (SPEC.md, "Report document").
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Mapping, Optional, Tuple, Union


class MetricType(str, enum.Enum):
    """A custom metric's declared type, spelled as the control plane spells it."""

    NUMBER = "number"
    NUMBER_LIST = "number-list"
    STRING_LIST = "string-list"
    IP_ADDRESS_LIST = "ip-address-list"

    @property
    def value_key(self) -> str:
        """The key that wraps a value of this type in a report (`number_list`, ...)."""
        return _VALUE_KEYS[self]

    @classmethod
    def from_value_key(cls, key: str) -> Optional[MetricType]:
        for member, vkey in _VALUE_KEYS.items():
            if vkey == key:
                return member
        return None


_VALUE_KEYS = {
    MetricType.NUMBER: "number",
    MetricType.NUMBER_LIST: "number_list",
    MetricType.STRING_LIST: "string_list",
    MetricType.IP_ADDRESS_LIST: "ip_list",
}

Number = Union[int, float]
CustomValue = Union[Number, Tuple[Number, ...], Tuple[str, ...]]


@dataclass(frozen=True)
class ListeningPort:
    port: int
    interface: Optional[str] = None


@dataclass(frozen=True)
class ListeningPorts:
    """Listening TCP or UDP ports. ``total`` is the true count even when ``ports`` was capped."""

    ports: Tuple[ListeningPort, ...]
    total: Optional[int] = None

    @property
    def true_total(self) -> int:
        return len(self.ports) if self.total is None else self.total


@dataclass(frozen=True)
class Connection:
    remote_addr: str  # "ip:port", IPv6 as "[addr]:port"
    local_port: Optional[int] = None
    local_interface: Optional[str] = None


@dataclass(frozen=True)
class Connections:
    """Established TCP connections; ``total`` as for :class:`ListeningPorts`."""

    connections: Tuple[Connection, ...]
    total: Optional[int] = None

    @property
    def true_total(self) -> int:
        return len(self.connections) if self.total is None else self.total


@dataclass(frozen=True)
class NetworkStats:
    """Counters as deltas since the previous report (never raw totals)."""

    bytes_in: int
    bytes_out: int
    packets_in: int
    packets_out: int

    def __add__(self, other: NetworkStats) -> NetworkStats:
        return NetworkStats(
            self.bytes_in + other.bytes_in,
            self.bytes_out + other.bytes_out,
            self.packets_in + other.packets_in,
            self.packets_out + other.packets_out,
        )


StandardValue = Union[ListeningPorts, Connections, NetworkStats]

# Standard metric names (the long report keys under `metrics`) and the value type each takes.
STANDARD_METRICS: Mapping[str, type] = {
    "listening_tcp_ports": ListeningPorts,
    "listening_udp_ports": ListeningPorts,
    "tcp_connections": Connections,
    "network_stats": NetworkStats,
}


@dataclass(frozen=True)
class Report:
    """One report before encoding.

    ``custom`` maps a custom metric name to its value; the encoder checks the value
    against the metric's declared type in the catalog, never against the value itself.
    """

    report_id: int
    standard: Mapping[str, StandardValue] = field(default_factory=dict)
    custom: Mapping[str, CustomValue] = field(default_factory=dict)
