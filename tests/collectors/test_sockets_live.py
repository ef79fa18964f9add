"""Standard socket metrics on this machine: real sockets, and the same view as an unprivileged user."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from agent.collectors.standard.connections import ConnectionsCollector
from agent.collectors.standard.ports import ListeningPortsCollector

ROOT = Path(__file__).resolve().parents[2]
LOG = logging.getLogger("test")


def _ipv6_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.fixture
def open_sockets():
    """Listening TCP and UDP sockets on IPv4 and IPv6 loopback plus one established TCP pair."""
    made = []
    families = [(socket.AF_INET, "127.0.0.1")] + ([(socket.AF_INET6, "::1")] if _ipv6_available() else [])
    ports = {"tcp": {}, "udp": {}}
    for family, host in families:
        tcp = socket.socket(family, socket.SOCK_STREAM)
        tcp.bind((host, 0))
        tcp.listen(4)
        udp = socket.socket(family, socket.SOCK_DGRAM)
        udp.bind((host, 0))
        made += [tcp, udp]
        ports["tcp"][host] = tcp.getsockname()[1]
        ports["udp"][host] = udp.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", ports["tcp"]["127.0.0.1"]))
    server_side, _ = made[0].accept()
    made += [client, server_side]
    yield ports, client
    for s in made:
        s.close()


def _collect_ports(**kw):
    c = ListeningPortsCollector("p", protocols=("tcp", "udp"), max_items=5000, logger=LOG, **kw)
    return {s.name: s.value for s in c.collect()}


def test_real_listeners_appear_with_loopback_interface(open_sockets):
    ports, _ = open_sockets
    values = _collect_ports(exclude_loopback=False)
    tcp = {(p.port, p.interface) for p in values["listening_tcp_ports"].ports}
    udp = {(p.port, p.interface) for p in values["listening_udp_ports"].ports}
    for host, port in ports["tcp"].items():
        assert (port, "lo") in tcp, host
    for host, port in ports["udp"].items():
        assert (port, "lo") in udp, host
    assert values["listening_tcp_ports"].total == len(values["listening_tcp_ports"].ports)


def test_exclude_loopback_drops_real_loopback_listeners(open_sockets):
    ports, _ = open_sockets
    values = _collect_ports(exclude_loopback=True)
    seen = {p.port for p in values["listening_tcp_ports"].ports} | {
        p.port for p in values["listening_udp_ports"].ports
    }
    assert not seen & (set(ports["tcp"].values()) | set(ports["udp"].values()))


def test_real_wildcard_listener_has_no_interface():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("0.0.0.0", 0))
        s.listen(1)
        port = s.getsockname()[1]
        values = _collect_ports(exclude_loopback=True)
    assert (port, None) in {(p.port, p.interface) for p in values["listening_tcp_ports"].ports}


def test_real_established_connection_appears(open_sockets):
    ports, client = open_sockets
    [sample] = ConnectionsCollector("c", exclude_loopback=False, max_items=5000, logger=LOG).collect()
    local_port = client.getsockname()[1]
    remote = f"127.0.0.1:{ports['tcp']['127.0.0.1']}"
    pairs = {(c.remote_addr, c.local_port, c.local_interface) for c in sample.value.connections}
    assert (remote, local_port, "lo") in pairs  # the client side
    assert (f"127.0.0.1:{local_port}", ports["tcp"]["127.0.0.1"], "lo") in pairs  # the server side


SNIPPET = """
import json, logging
from agent.collectors.standard.connections import ConnectionsCollector
from agent.collectors.standard.ports import ListeningPortsCollector
log = logging.getLogger("x")
p = {s.name: s.value for s in ListeningPortsCollector("p", protocols=("tcp", "udp"), exclude_loopback=False,
                                                      max_items=100000, logger=log).collect()}
[c] = ConnectionsCollector("c", exclude_loopback=False, max_items=100000, logger=log).collect()
print(json.dumps({
    "tcp": sorted([x.port, x.interface or ""] for x in p["listening_tcp_ports"].ports),
    "udp": sorted([x.port, x.interface or ""] for x in p["listening_udp_ports"].ports),
    "conns": sorted([x.remote_addr, x.local_port, x.local_interface or ""] for x in c.value.connections),
    "uid": __import__("os").getuid(),
}))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to the nobody user")
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) not installed")
def test_unprivileged_user_sees_the_same_sockets(open_sockets):
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}

    def run(prefix):
        out = subprocess.run(
            [*prefix, sys.executable, "-c", SNIPPET],
            check=False,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            cwd="/",
        )
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    for _ in range(3):  # other processes may open or close sockets between the two runs
        as_root, as_nobody = run([]), run(nobody)
        if {k: v for k, v in as_root.items() if k != "uid"} == {
            k: v for k, v in as_nobody.items() if k != "uid"
        }:
            break
    assert as_root["uid"] == 0 and as_nobody["uid"] != 0
    assert as_nobody["tcp"] == as_root["tcp"]
    assert as_nobody["udp"] == as_root["udp"]
    assert as_nobody["conns"] == as_root["conns"]
    ports, _ = open_sockets
    assert [ports["tcp"]["127.0.0.1"], "lo"] in as_nobody["tcp"]
