"""Socket records from psutil, local-address -> interface names, address formatting, list capping.

Pure functions take plain records, so tests feed them recorded psutil results
(tests/fixtures/collectors/*.json) instead of patching anything.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Protocol, Sequence, Tuple, TypeVar

import psutil

from agent.collectors.rounds import RoundCache

T = TypeVar("T")


@dataclass(frozen=True)
class Sock:
    """One inet socket, independent of psutil: ``proto`` is ``tcp`` or ``udp``."""

    proto: str
    local_ip: str
    local_port: int
    remote_ip: Optional[str]
    remote_port: Optional[int]
    status: str


class SocketSource(Protocol):
    """Where sockets and interface addresses come from (psutil in production)."""

    def connections(self, kind: str) -> Sequence[Any]: ...

    def if_addrs(self) -> Mapping[str, Sequence[Any]]: ...


_KIND_TYPES = {"inet": None, "tcp": socket.SOCK_STREAM, "udp": socket.SOCK_DGRAM}


class PsutilSockets:
    """Reads /proc/net/{tcp,tcp6,udp,udp6} through psutil; needs no privilege (pids stay unknown).

    Within a sampling round of its :class:`RoundCache` the table is read once, as ``inet``
    (TCP and UDP), and each kind is filtered from it: the listening-ports and connections
    collectors would otherwise each pay for ``net_connections``, the dearest call of a cycle.
    """

    def __init__(self, rounds: Optional[RoundCache] = None) -> None:
        self._rounds = rounds or RoundCache()

    def connections(self, kind: str) -> Sequence[Any]:
        if kind not in _KIND_TYPES:
            return psutil.net_connections(kind=kind)
        table = self._rounds.shared("psutil.net_connections(inet)", lambda: tuple(psutil.net_connections("inet")))
        wanted = _KIND_TYPES[kind]
        return table if wanted is None else tuple(c for c in table if c.type == wanted)

    def if_addrs(self) -> Mapping[str, Sequence[Any]]:
        return self._rounds.shared("psutil.net_if_addrs", psutil.net_if_addrs)


def from_psutil(conn: Any) -> Optional[Sock]:
    """A psutil ``sconn`` -> :class:`Sock`; ``None`` for non-inet sockets."""
    if conn.family not in (socket.AF_INET, socket.AF_INET6):
        return None
    proto = "tcp" if conn.type == socket.SOCK_STREAM else "udp" if conn.type == socket.SOCK_DGRAM else ""
    if not proto or not conn.laddr:
        return None
    raddr = conn.raddr or None
    return Sock(
        proto=proto,
        local_ip=normalize_ip(conn.laddr[0]),
        local_port=int(conn.laddr[1]),
        remote_ip=normalize_ip(raddr[0]) if raddr else None,
        remote_port=int(raddr[1]) if raddr else None,
        status=str(conn.status),
    )


def normalize_ip(text: str) -> str:
    """Drop a ``%scope`` suffix and turn IPv4-mapped IPv6 (``::ffff:10.0.0.1``) into IPv4."""
    bare = text.split("%", 1)[0]
    try:
        addr = ipaddress.ip_address(bare)
    except ValueError:
        return bare
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


def is_wildcard(ip: str) -> bool:
    return ip in ("0.0.0.0", "::")


def is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class InterfaceMap:
    """Local IP address -> interface name, from ``psutil.net_if_addrs()``."""

    by_ip: Mapping[str, str]
    loopback: str = "lo"

    @classmethod
    def from_if_addrs(cls, if_addrs: Mapping[str, Sequence[Any]]) -> InterfaceMap:
        by_ip: Dict[str, str] = {}
        loopback = "lo"
        for name in sorted(if_addrs):  # sorted: the same IP on two interfaces maps to the first name
            for addr in if_addrs[name]:
                if getattr(addr, "family", None) not in (socket.AF_INET, socket.AF_INET6):
                    continue
                ip = normalize_ip(str(addr.address))
                by_ip.setdefault(ip, name)
                if ip in ("127.0.0.1", "::1"):
                    loopback = name
        return cls(by_ip, loopback)

    def interface_of(self, ip: str) -> Optional[str]:
        """The interface that owns ``ip``; ``None`` for a wildcard bind or an address on no interface.

        Any 127.0.0.0/8 address (e.g. systemd-resolved's 127.0.0.53) belongs to the loopback interface.
        """
        if is_wildcard(ip):
            return None
        name = self.by_ip.get(ip)
        if name is None and is_loopback(ip):
            return self.loopback
        return name


def format_remote(ip: str, port: int) -> str:
    """``10.0.0.2:443``; IPv6 in brackets: ``[fd00::1]:443`` (SPEC.md)."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def ip_sort_key(ip: str) -> Tuple[int, int]:
    """IPv4 before IPv6, then numeric order; unparsable text last."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return (9, 0)
    return (addr.version, int(addr))


def cap(items: Sequence[T], limit: int) -> Tuple[Tuple[T, ...], int]:
    """Keep the first ``limit`` of already sorted ``items``; return them and the true count."""
    return tuple(items[:limit]), len(items)


def inet_socks(conns: Iterable[Any]) -> List[Sock]:
    out: List[Sock] = []
    for conn in conns:
        sock = from_psutil(conn)
        if sock is not None:
            out.append(sock)
    return out
