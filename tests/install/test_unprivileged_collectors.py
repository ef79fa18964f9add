"""The service's user and sandbox do not blind the collectors.

The same snapshot (listening ports, established connections, NICs) is taken as
root and as an unprivileged user with the unit's privilege settings, and the
results are compared. Runners:

- ``setpriv``: uid/gid nobody, no supplementary groups, NoNewPrivileges, no
  capabilities (empty bounding and inheritable sets). Works without systemd.
- ``systemd-run``: a transient service with the [Service] sandbox of
  systemd/defender-agent.service (ProtectSystem, PrivateTmp, PrivateDevices,
  ProtectKernel*, SystemCallFilter, RestrictAddressFamilies, ...), User=nobody.
  Needs systemd as PID 1; skipped otherwise (e.g. in containers).

NOTE for integration: SNAPSHOT_ARGV runs psutil directly because the collector
layer is being written in parallel. Once `defender-agent once` can print its
samples, point SNAPSHOT_ARGV at it (e.g. ``[agent, "once", "--config", cfg,
"--dry-run", "--format", "json"]``) and make ``normalise`` map its JSON into
the same dict of sets; the comparison logic stays as it is.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

import pytest

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "defender-agent.service"

PROGRAM = r"""
import json, psutil
conns = psutil.net_connections(kind="inet")
def addr(a):
    return [a.ip, a.port] if a else None
out = {
    "listen_tcp": [addr(c.laddr) for c in conns if c.type == 1 and c.status == psutil.CONN_LISTEN],
    "listen_udp": [addr(c.laddr) for c in conns if c.type == 2 and not c.raddr],
    "established": [addr(c.laddr) + addr(c.raddr) for c in conns if c.status == psutil.CONN_ESTABLISHED],
    "nics": list(psutil.net_io_counters(pernic=True)),
    "if_addrs": list(psutil.net_if_addrs()),
}
print(json.dumps(out))
"""
SNAPSHOT_ARGV: List[str] = [sys.executable, "-c", PROGRAM]

Snapshot = Dict[str, Set[Tuple]]

# [Service] settings of the unit that are about running the agent, not about the sandbox.
NOT_SANDBOX = {
    "Type", "NotifyAccess", "ExecStart", "Environment", "WatchdogSec", "TimeoutStartSec", "TimeoutStopSec",
    "Restart", "RestartSec", "RestartPreventExitStatus", "User", "Group", "StateDirectory", "StateDirectoryMode",
    "ConfigurationDirectory", "ConfigurationDirectoryMode", "LoadCredential",
}  # fmt: skip

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="comparing with root and switching users needs root"
)


def normalise(stdout: str) -> Snapshot:
    raw = json.loads(stdout)
    return {
        key: {tuple(item) if isinstance(item, list) else (item,) for item in values}
        for key, values in raw.items()
    }


def setpriv_prefix() -> List[str]:
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    return [
        "setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
        "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all",
    ]  # fmt: skip


def unit_sandbox_properties() -> List[str]:
    props = []
    section = ""
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and line and not line.startswith("#") and "=" in line:
            key = line.split("=", 1)[0]
            if key not in NOT_SANDBOX:
                props += ["-p", line]
    return props


def systemd_run_prefix() -> List[str]:
    if shutil.which("systemd-run") is None or not Path("/run/systemd/system").is_dir():
        pytest.skip("systemd is not the running init here (container?): cannot start a transient service")
    return [
        "systemd-run", "--wait", "--pipe", "--quiet", "--collect",
        "-p", "User=nobody", "-p", "Group=nogroup", *unit_sandbox_properties(), "--",
    ]  # fmt: skip


def take(prefix: List[str]) -> Snapshot:
    result = subprocess.run(
        [*prefix, *SNAPSHOT_ARGV], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, f"{' '.join(prefix[:1])} snapshot failed: {result.stderr}"
    return normalise(result.stdout)


@pytest.fixture
def own_sockets() -> Iterator[Dict[str, Tuple]]:
    """Sockets this test holds open, so each snapshot has something known to find."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    try:
        yield {
            "listen_tcp": listener.getsockname(),
            "listen_udp": udp.getsockname(),
            "established": (*client.getsockname(), *client.getpeername()),
        }
    finally:
        for sock in (server, client, udp, listener):
            sock.close()


@pytest.mark.parametrize("runner", ["setpriv", "systemd-run"])
def test_unprivileged_sandboxed_snapshot_matches_root(runner: str, own_sockets: Dict[str, Tuple]) -> None:
    prefix = setpriv_prefix() if runner == "setpriv" else systemd_run_prefix()
    before = take([])
    unprivileged = take(prefix)
    after = take([])
    for key, own in own_sockets.items():
        assert tuple(own) in unprivileged[key], f"{runner}: own socket {own} missing from {key}"
        assert tuple(own) in before[key]
    # Other processes on the machine open and close sockets meanwhile: everything present
    # in both root snapshots must be seen, and nothing that root saw in neither.
    for key in unprivileged:
        stable = before[key] & after[key]
        seen_by_root = before[key] | after[key]
        missing = stable - unprivileged[key]
        extra = unprivileged[key] - seen_by_root
        assert not missing, f"{runner}: {key} hidden from the service user: {sorted(missing)[:10]}"
        assert len(extra) <= max(5, len(seen_by_root) // 20), (
            f"{runner}: {key} unexpected: {sorted(extra)[:10]}"
        )
    assert unprivileged["nics"] == before["nics"]
