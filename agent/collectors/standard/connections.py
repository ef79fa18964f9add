"""Established TCP connections (``tcp_connections``).

Each connection: ``remote_addr`` ``ip:port`` (IPv6 ``[addr]:port``, IPv4-mapped
IPv6 written as IPv4), ``local_port``, ``local_interface`` (omitted when the
local address is on no interface). Order: remote IP (IPv4 first, numeric), remote
port, local port, interface; when capped, the first ones in that order are kept.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable, List, Mapping, Optional, Set, Tuple

from agent.collectors.contract import BuildContext, CollectorSpec, Emits
from agent.collectors.standard.ports import note_capping
from agent.collectors.standard.sockets import (
    InterfaceMap,
    PsutilSockets,
    Sock,
    SocketSource,
    cap,
    format_remote,
    ip_sort_key,
    is_loopback,
    socket_table,
)
from agent.errors import CollectorError
from agent.report.model import Connection, Connections, Sample, SampleKind
from agent.schema import Bool

METRIC = "tcp_connections"


def established_connections(
    socks: Iterable[Sock], interfaces: InterfaceMap, exclude_loopback: bool = False
) -> List[Connection]:
    """Established TCP connections in the documented order."""
    keyed: List[Tuple[Tuple[Any, ...], Connection]] = []
    for sock in socks:
        if sock.proto != "tcp" or sock.status != "ESTABLISHED":
            continue
        if sock.remote_ip is None or sock.remote_port is None:
            continue
        if exclude_loopback and is_loopback(sock.remote_ip):
            continue
        iface = interfaces.interface_of(sock.local_ip)
        conn = Connection(format_remote(sock.remote_ip, sock.remote_port), sock.local_port, iface)
        keyed.append(((ip_sort_key(sock.remote_ip), sock.remote_port, sock.local_port, iface or ""), conn))
    keyed.sort(key=lambda item: item[0])
    return [conn for _, conn in keyed]


class ConnectionsCollector:
    def __init__(
        self,
        name: str,
        *,
        exclude_loopback: bool,
        max_items: int,
        logger: logging.Logger,
        source: Optional[SocketSource] = None,
    ) -> None:
        self.name = name
        self._exclude_loopback = exclude_loopback
        self._max_items = max_items
        self._logger = logger
        self._source: SocketSource = source or PsutilSockets()
        self._capping: Set[str] = set()

    def collect(self) -> List[Sample]:
        try:
            socks, interfaces = socket_table(self._source, "tcp")
        except OSError as exc:
            raise CollectorError(f"cannot list TCP connections: {exc}") from exc
        conns = established_connections(socks, interfaces, self._exclude_loopback)
        kept, total = cap(conns, self._max_items)
        note_capping(
            self._logger,
            self._capping,
            METRIC,
            total=total,
            limit=self._max_items,
            kept="first by remote address",
        )
        return [Sample(METRIC, Connections(kept, total), SampleKind.STANDARD)]


def _emits(options: Mapping[str, Any]) -> Emits:
    return {METRIC: None}


def _build(ctx: BuildContext, options: Mapping[str, Any]) -> ConnectionsCollector:
    return ConnectionsCollector(
        ctx.name,
        exclude_loopback=options["exclude_loopback"],
        max_items=ctx.max_list_items,
        logger=ctx.logger,
        source=PsutilSockets(ctx.reads),
    )


DOC = """\
Every TCP connection in ESTABLISHED state, IPv4 and IPv6 (IPv4-mapped IPv6 addresses are written as IPv4),
each with `remote_addr` `ip:port` (`[addr]:port` for IPv6), `local_port` and `local_interface` (left out
when the local address is on no interface). A list longer than `report.max_list_items` keeps a
deterministic subset (by remote IP, IPv4 first and numerically, then remote port, then local port) and the
true `total`, logged once. No privilege is needed.
"""

SAMPLE = """\
collectors:
  - type: tcp_connections
    exclude_loopback: true   # a database on 127.0.0.1 is not traffic leaving the gateway
"""


SPEC = CollectorSpec(
    type="tcp_connections",
    doc=DOC,
    sample=SAMPLE,
    summary="Established TCP connections, IPv4 and IPv6, with local port and interface (standard metric).",
    options={
        "exclude_loopback": Bool(
            doc="Leave out connections whose remote end is a loopback address (local traffic).", default=False
        ),
    },
    build=_build,
    emits=_emits,
    example={},
)
