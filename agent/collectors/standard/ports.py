"""Listening TCP and UDP ports (``listening_tcp_ports``, ``listening_udp_ports``).

A TCP socket listens when its state is LISTEN; a UDP socket "listens" when it is
bound to a port and not connected to a remote address. The interface is the one
that owns the bound address; a wildcard bind (0.0.0.0, ::) listens on every
interface and is reported without ``interface`` (docs/DEVELOPMENT.md, "Collectors: what they read, and why"). Entries are
unique (port, interface) pairs, so a port bound on both 0.0.0.0 and :: appears
once. Order: port ascending, then interface name (wildcard first); when capped,
the lowest ports are kept.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable, List, Mapping, Optional, Set, Tuple

from agent.collectors.contract import BuildContext, CollectorSpec, Emits
from agent.collectors.standard.sockets import (
    InterfaceMap,
    PsutilSockets,
    Sock,
    SocketSource,
    cap,
    is_loopback,
    socket_table,
)
from agent.errors import CollectorError
from agent.report.model import ListeningPort, ListeningPorts, Sample, SampleKind
from agent.schema import Bool, Enum, ListOf

METRIC_BY_PROTO = {"tcp": "listening_tcp_ports", "udp": "listening_udp_ports"}


def listening_ports(
    socks: Iterable[Sock], proto: str, interfaces: InterfaceMap, exclude_loopback: bool = False
) -> List[ListeningPort]:
    """Unique listening (port, interface) pairs of ``proto``, sorted by port then interface."""
    seen: Set[Tuple[int, Optional[str]]] = set()
    for sock in socks:
        if sock.proto != proto or not 1 <= sock.local_port <= 65535:
            continue
        if proto == "tcp" and sock.status != "LISTEN":
            continue
        if proto == "udp" and sock.remote_ip is not None:
            continue  # a connected UDP socket is a client, not a listener
        if exclude_loopback and is_loopback(sock.local_ip):
            continue
        seen.add((sock.local_port, interfaces.interface_of(sock.local_ip)))
    ordered = sorted(seen, key=lambda item: (item[0], item[1] or ""))
    return [ListeningPort(port, iface) for port, iface in ordered]


class ListeningPortsCollector:
    def __init__(
        self,
        name: str,
        *,
        protocols: Tuple[str, ...],
        exclude_loopback: bool,
        max_items: int,
        logger: logging.Logger,
        source: Optional[SocketSource] = None,
    ) -> None:
        self.name = name
        self._protocols = protocols
        self._exclude_loopback = exclude_loopback
        self._max_items = max_items
        self._logger = logger
        self._source: SocketSource = source or PsutilSockets()
        self._capping: Set[str] = set()

    def collect(self) -> List[Sample]:
        if not self._protocols:
            return []
        kind = "inet" if len(self._protocols) > 1 else self._protocols[0]
        try:
            socks, interfaces = socket_table(self._source, kind)
        except OSError as exc:
            raise CollectorError(f"cannot list sockets: {exc}") from exc
        samples: List[Sample] = []
        for proto in self._protocols:
            metric = METRIC_BY_PROTO[proto]
            ports = listening_ports(socks, proto, interfaces, self._exclude_loopback)
            kept, total = cap(ports, self._max_items)
            note_capping(
                self._logger, self._capping, metric, total=total, limit=self._max_items, kept="lowest ports"
            )
            samples.append(Sample(metric, ListeningPorts(kept, total), SampleKind.STANDARD))
        return samples


def note_capping(
    logger: logging.Logger, capping: Set[str], metric: str, *, total: int, limit: int, kept: str
) -> None:
    """Log once when a list starts being capped, and once when it fits again."""
    if total > limit and metric not in capping:
        capping.add(metric)
        logger.warning(
            "Capping %s at %d of %d entries (report.max_list_items); keeping the %s",
            metric,
            limit,
            total,
            kept,
        )
    elif total <= limit and metric in capping:
        capping.discard(metric)
        logger.info("%s fits in report.max_list_items again (%d entries)", metric, total)


def _emits(options: Mapping[str, Any]) -> Emits:
    return {METRIC_BY_PROTO[p]: None for p in options["protocols"]}


def _build(ctx: BuildContext, options: Mapping[str, Any]) -> ListeningPortsCollector:
    protocols = tuple(dict.fromkeys(options["protocols"]))
    return ListeningPortsCollector(
        ctx.name,
        protocols=protocols,
        exclude_loopback=options["exclude_loopback"],
        max_items=ctx.max_list_items,
        logger=ctx.logger,
        source=PsutilSockets(ctx.reads),
    )


DOC = """\
A TCP socket listens when it is in LISTEN state; a UDP socket listens when it is bound and not connected.
IPv4 and IPv6 are both read; IPv4-mapped IPv6 addresses are written as IPv4. A socket bound to a wildcard
address (`0.0.0.0`, `::`) listens on every interface and is reported **without** `interface`; a socket bound
to one address is reported with the interface that owns it (any 127.0.0.0/8 address counts as the loopback
interface). Ports are unique (port, interface) pairs. A list longer than `report.max_list_items` keeps a
deterministic subset (ports ascending, then interface) and the true `total`, logged once. No privilege is
needed: an unprivileged user sees the same sockets (only without their processes).
"""

SAMPLE = """\
collectors:
  - type: listening_ports
    exclude_loopback: true   # leave out services bound only to 127.0.0.1 or ::1
"""


SPEC = CollectorSpec(
    type="listening_ports",
    doc=DOC,
    sample=SAMPLE,
    summary="Listening TCP and UDP ports, IPv4 and IPv6, with interface names (standard metrics).",
    options={
        "protocols": ListOf(
            doc="Which lists to report: tcp -> listening_tcp_ports, udp -> listening_udp_ports.",
            item=Enum(choices=("tcp", "udp")),
            default=["tcp", "udp"],
            max_items=2,
        ),
        "exclude_loopback": Bool(doc="Leave out sockets bound only to a loopback address.", default=False),
    },
    build=_build,
    emits=_emits,
    example={},
)
