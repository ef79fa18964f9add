"""One socket-table read per sampling round, shared by the collectors that need it; none outside a round."""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import List

import pytest

from agent.collectors.readcache import ReadCache
from agent.collectors.sampler import CollectorJob, Sampler
from agent.collectors.standard import sockets
from agent.collectors.standard.connections import ConnectionsCollector
from agent.collectors.standard.ports import ListeningPortsCollector

LOG = logging.getLogger("test")


def test_outside_a_round_every_call_reads() -> None:
    cache = ReadCache()
    calls: List[int] = []
    assert cache.shared("k", lambda: calls.append(1) or len(calls)) == 1
    assert cache.shared("k", lambda: calls.append(1) or len(calls)) == 2


def test_inside_a_round_concurrent_callers_share_one_read() -> None:
    cache = ReadCache()
    calls: List[int] = []

    def slow_read() -> int:
        calls.append(1)
        time.sleep(0.05)
        return 42

    got: List[int] = []
    with cache.round():
        threads = [threading.Thread(target=lambda: got.append(cache.shared("k", slow_read))) for _ in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(5)
    assert got == [42] * 5 and len(calls) == 1
    with cache.round():  # a new round reads again: nothing is carried over
        assert cache.shared("k", slow_read) == 42
    assert len(calls) == 2


def test_an_error_is_not_cached() -> None:
    cache = ReadCache()
    attempts: List[int] = []

    def flaky() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError("boom")
        return "ok"

    with cache.round():
        with pytest.raises(OSError):
            cache.shared("k", flaky)
        assert cache.shared("k", flaky) == "ok"


def test_ports_and_connections_read_the_socket_table_once_per_round(monkeypatch: pytest.MonkeyPatch) -> None:
    reads: List[str] = []
    real = sockets.psutil.net_connections

    def counting(kind: str = "inet"):  # type: ignore[no-untyped-def]
        reads.append(kind)
        return real(kind)

    monkeypatch.setattr(sockets.psutil, "net_connections", counting)
    cache = ReadCache()
    ports = ListeningPortsCollector("p", protocols=("tcp", "udp"), exclude_loopback=False, max_items=500, logger=LOG,
                                    source=sockets.PsutilSockets(cache))
    conns = ConnectionsCollector("c", exclude_loopback=False, max_items=500, logger=LOG,
                                 source=sockets.PsutilSockets(cache))
    jobs = [
        CollectorJob("p", "listening_ports", ports, 5.0, emits={"listening_tcp_ports": None, "listening_udp_ports": None},
                     reads=cache),
        CollectorJob("c", "tcp_connections", conns, 5.0, emits={"tcp_connections": None}, reads=cache),
    ]
    sampler = Sampler(jobs, 60.0, {})
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        port = srv.getsockname()[1]
        first = sampler.sample_all()
        assert not first.failures
        assert reads == ["inet"]
        tcp = next(s.value for s in first.samples if s.name == "listening_tcp_ports")
        assert port in {p.port for p in tcp.ports}  # type: ignore[union-attr]
    second = sampler.sample_all()  # the listener is gone: a new round reads afresh
    assert reads == ["inet", "inet"]
    tcp = next(s.value for s in second.samples if s.name == "listening_tcp_ports")
    assert port not in {p.port for p in tcp.ports}  # type: ignore[union-attr]
    # Called directly (no round), each collector reads for itself, by kind.
    conns.collect()
    assert reads[-1] == "inet"
    assert len(reads) == 3


def test_two_builds_share_nothing() -> None:
    first, second = ReadCache(), ReadCache()
    with first.round():
        assert first.shared("k", lambda: 1) == 1
        assert first.shared("k", lambda: 2) == 1
        assert second.shared("k", lambda: 3) == 3  # the other build is not in a round
