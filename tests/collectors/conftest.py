"""Shared helpers for collector tests: recorded psutil results, a fake socket source."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence

import pytest

try:  # psutil >= 7 keeps its namedtuples here
    from psutil._ntuples import addr, sconn, snicaddr
except ImportError:  # pragma: no cover - psutil 5.x/6.x
    from psutil._common import addr, sconn, snicaddr  # type: ignore[attr-defined,no-redef]

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "collectors"


class RecordedSockets:
    """A SocketSource replaying a fixture file as real psutil namedtuples."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.conns: List[Any] = []
        for family, kind, laddr, raddr, status in data["connections"]:
            self.conns.append(
                sconn(
                    -1,
                    socket.AddressFamily(family),
                    socket.SocketKind(kind),
                    addr(laddr[0], laddr[1]),
                    addr(raddr[0], raddr[1]) if raddr else (),
                    status,
                    None,
                )
            )
        self.addrs: Dict[str, List[Any]] = {
            name: [snicaddr(socket.AddressFamily(f), a, None, None, None) for f, a in entries]
            for name, entries in data["if_addrs"].items()
        }
        self.calls: List[str] = []

    def connections(self, kind: str) -> Sequence[Any]:
        self.calls.append(kind)
        wanted = {"inet": (1, 2), "tcp": (1,), "udp": (2,)}[kind]
        return [c for c in self.conns if int(c.type) in wanted]

    def if_addrs(self) -> Mapping[str, Sequence[Any]]:
        return self.addrs


def load_sockets(name: str) -> RecordedSockets:
    return RecordedSockets(json.loads((FIXTURES / name).read_text()))


@pytest.fixture
def mixed_sockets() -> RecordedSockets:
    return load_sockets("sockets-mixed.json")


@pytest.fixture(scope="session")
def thousands_sockets() -> RecordedSockets:
    return load_sockets("sockets-thousands.json")
