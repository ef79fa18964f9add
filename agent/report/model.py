"""Typed values of a Device Defender report, independent of key names and encoding.

Collectors return these inside a :class:`Sample`; :class:`agent.report.builder.ReportBuilder`
groups a round's samples into a :class:`Report` and the encoder turns it into a document
with long or short key names (the names are in :mod:`agent.catalog`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional, Tuple, Union

from agent.catalog import STANDARD_METRICS, StandardKind
from agent.schema import TextEnum

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

# The value class of each standard metric kind (the names are in agent.catalog.STANDARD_METRICS).
VALUE_CLASSES: Mapping[StandardKind, type] = {
    StandardKind.PORTS: ListeningPorts,
    StandardKind.CONNECTIONS: Connections,
    StandardKind.NETWORK_STATS: NetworkStats,
}


def standard_value_class(name: str) -> Optional[type]:
    """The value class a standard metric ``name`` takes; None for a name that is not a standard metric."""
    metric = STANDARD_METRICS.get(name)
    return None if metric is None else VALUE_CLASSES[metric.kind]


class SampleKind(TextEnum):
    STANDARD = "standard"  # goes under `metrics`; the name is a key of agent.catalog.STANDARD_METRICS
    CUSTOM = "custom"  # goes under `custom_metrics`; the name is a declared custom metric


@dataclass(frozen=True)
class Sample:
    """One value a collector read, by metric name: the report's input."""

    name: str
    value: Union[StandardValue, CustomValue]
    kind: SampleKind = SampleKind.CUSTOM


@dataclass(frozen=True)
class Report:
    """One report before encoding.

    ``custom`` maps a custom metric name to its value; the encoder checks the value
    against the metric's declared type in the catalog, never against the value itself.
    """

    report_id: int
    standard: Mapping[str, StandardValue] = field(default_factory=dict)
    custom: Mapping[str, CustomValue] = field(default_factory=dict)
