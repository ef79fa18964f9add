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


PLUGINS = Path(__file__).resolve().parent.parent / "plugins"


@pytest.fixture(scope="session")
def installed_plugins(tmp_path_factory):
    """pip-install the example plugin and the broken plugins from tests/plugins into a target dir on sys.path.

    A real install (dist-info with entry points, found by importlib.metadata), kept out of the venv.
    """
    import importlib
    import importlib.util
    import shutil
    import subprocess
    import sys

    work = tmp_path_factory.mktemp("plugins")
    target = work / "site"
    sources = []
    for name in ("example", "broken"):
        shutil.copytree(PLUGINS / name, work / name)  # builds write into the source tree; keep tests/ clean
        sources.append(str(work / name))
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "-q",
        "--no-deps",
        "--disable-pip-version-check",
        "--target",
        str(target),
        *sources,
    ]
    if importlib.util.find_spec("wheel") is not None:
        cmd.insert(4, "--no-build-isolation")
    out = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    yield target
    sys.path.remove(str(target))
    for mod in [m for m in sys.modules if m.startswith(("defender_agent_dice", "defender_agent_broken"))]:
        del sys.modules[mod]
