"""Listening ports and connections from recorded psutil results (fixture files)."""

from __future__ import annotations

import logging

import pytest

from agent.collectors.standard.connections import ConnectionsCollector, established_connections
from agent.collectors.standard.ports import ListeningPortsCollector, listening_ports
from agent.collectors.standard.sockets import InterfaceMap, format_remote, inet_socks, normalize_ip
from agent.report.model import Connection, Connections, ListeningPort, ListeningPorts


def _parts(src):
    return inet_socks(src.conns), InterfaceMap.from_if_addrs(src.addrs)


def test_tcp_listeners_wildcard_loopback_ipv6_and_mapped(mixed_sockets):
    socks, ifaces = _parts(mixed_sockets)
    assert listening_ports(socks, "tcp", ifaces) == [
        ListeningPort(22, None),  # 0.0.0.0 and :: -> one wildcard entry, no interface
        ListeningPort(53, "lo"),  # 127.0.0.53 is on no interface list but is loopback
        ListeningPort(1883, "lo"),  # 127.0.0.1 and ::1 -> one entry
        ListeningPort(8080, "eth0"),
        ListeningPort(8443, "eth0"),  # IPv6 fd00::2
        ListeningPort(9000, "wlan0"),  # ::ffff:10.1.1.5
    ]


def test_udp_listeners_skip_connected_sockets(mixed_sockets):
    socks, ifaces = _parts(mixed_sockets)
    assert listening_ports(socks, "udp", ifaces) == [
        ListeningPort(68, None),
        ListeningPort(323, "lo"),
        ListeningPort(546, "eth0"),  # link-local fe80::1 (scope stripped from net_if_addrs)
        ListeningPort(5353, None),
    ]


def test_exclude_loopback_listeners(mixed_sockets):
    socks, ifaces = _parts(mixed_sockets)
    tcp = [p.port for p in listening_ports(socks, "tcp", ifaces, exclude_loopback=True)]
    udp = [p.port for p in listening_ports(socks, "udp", ifaces, exclude_loopback=True)]
    assert tcp == [22, 8080, 8443, 9000]
    assert udp == [68, 546, 5353]


def test_established_connections_order_and_format(mixed_sockets):
    socks, ifaces = _parts(mixed_sockets)
    assert established_connections(socks, ifaces) == [
        Connection("127.0.0.1:1883", 40000, "lo"),
        Connection("127.0.0.1:40000", 1883, "lo"),
        Connection("198.51.100.7:60000", 22, "eth0"),  # IPv4-mapped -> IPv4
        Connection("203.0.113.9:80", 41000, None),  # local address on no interface
        Connection("203.0.113.80:443", 45000, "eth0"),
        Connection("[2001:db8::1]:8883", 50000, "eth0"),
    ]


def test_established_connections_exclude_loopback(mixed_sockets):
    socks, ifaces = _parts(mixed_sockets)
    remotes = [c.remote_addr for c in established_connections(socks, ifaces, exclude_loopback=True)]
    assert remotes == ["198.51.100.7:60000", "203.0.113.9:80", "203.0.113.80:443", "[2001:db8::1]:8883"]


def test_collectors_emit_standard_samples(mixed_sockets):
    log = logging.getLogger("test")
    ports = ListeningPortsCollector(
        "p", protocols=("tcp", "udp"), exclude_loopback=False, max_items=500, logger=log, source=mixed_sockets
    )
    samples = {s.name: s.value for s in ports.collect()}
    assert set(samples) == {"listening_tcp_ports", "listening_udp_ports"}
    assert isinstance(samples["listening_tcp_ports"], ListeningPorts)
    assert samples["listening_tcp_ports"].total == 6
    assert mixed_sockets.calls == ["inet"]
    conns = ConnectionsCollector("c", exclude_loopback=False, max_items=500, logger=log, source=mixed_sockets)
    [sample] = conns.collect()
    assert sample.name == "tcp_connections" and isinstance(sample.value, Connections)
    assert sample.value.total == 6


def test_thousands_of_connections_capped_deterministically(thousands_sockets, caplog):
    log = logging.getLogger("agent.collectors.tcp_connections")
    collector = ConnectionsCollector(
        "c", exclude_loopback=False, max_items=500, logger=log, source=thousands_sockets
    )
    socks, ifaces = _parts(thousands_sockets)
    everything = established_connections(socks, ifaces)
    assert len(everything) >= 5000
    with caplog.at_level(logging.INFO):
        first = collector.collect()[0].value
        second = collector.collect()[0].value
    assert first == second  # deterministic
    assert len(first.connections) == 500
    assert first.total == len(everything)
    assert list(first.connections) == everything[:500]
    capping = [r for r in caplog.records if "Capping" in r.getMessage()]
    assert len(capping) == 1  # logged once, not per sample
    assert "500 of" in capping[0].getMessage()
    # every IPv6 loopback connection is written in brackets and maps to lo
    v6 = [c for c in everything if c.remote_addr.startswith("[")]
    assert v6 and all(c.remote_addr.startswith("[::1]:") and c.local_interface == "lo" for c in v6)


def test_capped_ports_keep_lowest(thousands_sockets):
    collector = ListeningPortsCollector(
        "p",
        protocols=("tcp",),
        exclude_loopback=False,
        max_items=1,
        logger=logging.getLogger("t"),
        source=thousands_sockets,
    )
    [sample] = collector.collect()
    socks, ifaces = _parts(thousands_sockets)
    all_ports = listening_ports(socks, "tcp", ifaces)
    assert sample.value.total == len(all_ports) >= 2
    assert sample.value.ports == (all_ports[0],)
    assert thousands_sockets.calls[-1] == "tcp"


@pytest.mark.parametrize(
    ("ip", "port", "expected"),
    [("10.0.0.2", 443, "10.0.0.2:443"), ("fd00::1", 8883, "[fd00::1]:8883"), ("::1", 1, "[::1]:1")],
)
def test_format_remote(ip, port, expected):
    assert format_remote(ip, port) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("::ffff:10.0.0.1", "10.0.0.1"),
        ("fe80::1%eth0", "fe80::1"),
        ("FD00:0::1", "fd00::1"),
        ("1.2.3.4", "1.2.3.4"),
    ],
)
def test_normalize_ip(raw, expected):
    assert normalize_ip(raw) == expected
