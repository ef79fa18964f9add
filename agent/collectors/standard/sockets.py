"""Socket records from psutil, local-address -> interface names, address formatting, list capping.

Pure functions take plain records, so tests feed them recorded psutil results
(tests/fixtures/collectors/*.json) instead of patching anything.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Protocol, Sequence, Tuple, TypeVar

import psutil

from agent.collectors.readcache import ReadCache

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

    Within a sampling round of its :class:`ReadCache` the table is read once, as ``inet``
    (TCP and UDP), and each kind is filtered from it: the listening-ports and connections
    collectors would otherwise each pay for ``net_connections``, the dearest call of a cycle.
    """

    def __init__(self, rounds: Optional[ReadCache] = None) -> None:
        self._rounds = rounds or ReadCache()

    def connections(self, kind: str) -> Sequence[Any]:
        if kind not in _KIND_TYPES:
            return psutil.net_connections(kind=kind)
        table = self._rounds.shared("psutil.net_connections(inet)", lambda: tuple(psutil.net_connections("inet")))
        wanted = _KIND_TYPES[kind]
        return table if wanted is None else tuple(c for c in table if c.type == wanted)

    def if_addrs(self) -> Mapping[str, Sequence[Any]]:
        return self._rounds.shared("psutil.net_if_addrs", psutil.net_if_addrs)

    def parsed(self) -> Tuple[Tuple[Sock, ...], InterfaceMap]:
        """Every inet socket as :class:`Sock` and the interface map, parsed once per round."""
        return self._rounds.shared("parsed inet sockets", self._parse)

    def _parse(self) -> Tuple[Tuple[Sock, ...], InterfaceMap]:
        return tuple(inet_socks(self.connections("inet"))), InterfaceMap.from_if_addrs(self.if_addrs())


def socket_table(source: SocketSource, kind: str) -> Tuple[Sequence[Sock], InterfaceMap]:
    """The sockets of at least ``kind`` (callers filter by ``proto``) and the interface map.

    From :class:`PsutilSockets` this is every inet socket, parsed once per round and
    shared by the collectors of the round; from another source, ``kind`` as it gives them.
    """
    if isinstance(source, PsutilSockets):
        return source.parsed()
    return inet_socks(source.connections(kind)), InterfaceMap.from_if_addrs(source.if_addrs())


def from_psutil(conn: Any, normalize: Optional[Callable[[str], str]] = None) -> Optional[Sock]:
    """A psutil ``sconn`` -> :class:`Sock`; ``None`` for non-inet sockets.

    ``normalize`` defaults to :func:`normalize_ip` (:func:`inet_socks` passes a memoized one).
    """
    normalize = normalize or normalize_ip
    if conn.family not in (socket.AF_INET, socket.AF_INET6):
        return None
    proto = "tcp" if conn.type == socket.SOCK_STREAM else "udp" if conn.type == socket.SOCK_DGRAM else ""
    if not proto or not conn.laddr:
        return None
    raddr = conn.raddr or None
    return Sock(
        proto=proto,
        local_ip=normalize(conn.laddr[0]),
        local_port=int(conn.laddr[1]),
        remote_ip=normalize(raddr[0]) if raddr else None,
        remote_port=int(raddr[1]) if raddr else None,
        status=str(conn.status),
    )


def normalize_ip(text: str) -> str:
    """Drop a ``%scope`` suffix and turn IPv4-mapped IPv6 (``::ffff:10.0.0.1``) into IPv4."""
    bare = text.split("%", 1)[0]
    fast = _fast_normalize(bare)
    return fast if fast is not None else _normalize_slow(bare)


def _normalize_slow(bare: str) -> str:
    """The reference: :mod:`ipaddress` (about 10 times dearer than :func:`_fast_normalize`)."""
    return plain_ip(bare) or bare


def plain_ip(text: str) -> Optional[str]:
    """``text`` as :mod:`ipaddress` writes the address (IPv4-mapped IPv6 as IPv4), or None when it is none."""
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


_AF_INET, _AF_INET6 = socket.AF_INET, socket.AF_INET6
_MAPPED_PREFIX = bytes(10) + b"\xff\xff"
_LOOPBACK6 = bytes(15) + b"\x01"


def _packed(ip: str) -> Optional[bytes]:
    """``inet_pton`` of ``ip`` (IPv6 when it has a colon), or None when it does not parse."""
    try:
        return socket.inet_pton(_AF_INET6 if ":" in ip else _AF_INET, ip)
    except (OSError, ValueError):  # ValueError: embedded NUL or non-ASCII text
        return None


def _fast_normalize(bare: str) -> Optional[str]:
    """:func:`_normalize_slow` through ``inet_pton``/``inet_ntop``; None where only the reference knows.

    The C functions print the same canonical text as :mod:`ipaddress` (RFC 5952: lower case,
    the first longest run of two or more zero groups compressed) except for the embedded
    IPv4 forms (``::1.2.3.4``), which are left to the reference, as is anything that does
    not parse (a property test pins the agreement).
    """
    packed = _packed(bare)
    if packed is None:
        return None
    if len(packed) == 4:
        return bare  # inet_pton takes only the dotted quad without leading zeros: already canonical
    if packed[:12] == _MAPPED_PREFIX:
        return socket.inet_ntop(_AF_INET, packed[12:])
    text = socket.inet_ntop(_AF_INET6, packed)
    return None if "." in text else text


def is_wildcard(ip: str) -> bool:
    return ip in ("0.0.0.0", "::")


def is_loopback(ip: str) -> bool:
    packed = _packed(ip)
    if packed is not None and len(packed) == 4:
        return packed[0] == 127
    if packed is not None and packed[:12] != _MAPPED_PREFIX:
        return packed == _LOOPBACK6
    try:  # IPv4-mapped IPv6 (its answer depends on the Python version) and text that does not parse
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
    """``10.0.0.2:443``; IPv6 in brackets: ``[fd00::1]:443`` (the developer guide's device-side metrics example)."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def ip_sort_key(ip: str) -> Tuple[int, int]:
    """IPv4 before IPv6, then numeric order; unparsable text last."""
    packed = _packed(ip)
    if packed is not None:
        return (4 if len(packed) == 4 else 6, int.from_bytes(packed, "big"))
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return (9, 0)
    return (addr.version, int(addr))


def cap(items: Sequence[T], limit: int) -> Tuple[Tuple[T, ...], int]:
    """Keep the first ``limit`` of already sorted ``items``; return them and the true count."""
    return tuple(items[:limit]), len(items)


def inet_socks(conns: Iterable[Any]) -> List[Sock]:
    normalize = _memo(normalize_ip)  # a table repeats few addresses (local ones, busy peers) many times
    out: List[Sock] = []
    for conn in conns:
        sock = from_psutil(conn, normalize)
        if sock is not None:
            out.append(sock)
    return out


def _memo(function: Callable[[str], str]) -> Callable[[str], str]:
    """``function`` with its answers remembered for as long as the returned callable lives."""
    seen: Dict[str, str] = {}

    def remembered(text: str) -> str:
        got = seen.get(text)
        if got is None:
            got = seen[text] = function(text)
        return got

    return remembered
