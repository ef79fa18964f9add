"""The service's user and sandbox do not blind the collectors.

The agent itself (``defender-agent once`` with the ``listening_ports`` and
``tcp_connections`` collectors, report written to a file) runs as root and as
an unprivileged user with the unit's privilege settings; the port and
connection sets of the reports are compared. The test holds known listeners
and a connection open on loopback, so the comparison is never vacuous.
Runners:

- ``setpriv``: uid/gid nobody, no supplementary groups, NoNewPrivileges, no
  capabilities (empty bounding and inheritable sets). Works without systemd.
- ``systemd-run``: a transient service with the [Service] sandbox of
  systemd/defender-agent.service (ProtectSystem, PrivateTmp, PrivateDevices,
  ProtectKernel*, SystemCallFilter, RestrictAddressFamilies, ...), User=nobody.
  Needs systemd as PID 1; skipped otherwise (e.g. in containers).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

import pytest

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "defender-agent.service"

CONFIG = """\
thing_name: unprivileged-check
mqtt:
  endpoint: 127.0.0.1
  cert: {root}/cert.pem
  key: {root}/key.pem
  ca: {root}/ca.pem
report:
  max_list_items: 5000
collectors:
  - type: listening_ports
  - type: tcp_connections
state_dir: {root}/state
"""

Snapshot = Dict[str, Set[Tuple]]

# [Service] settings of the unit that are about running the agent, not about the sandbox.
NOT_SANDBOX = {
    "Type", "NotifyAccess", "ExecStart", "Environment", "WatchdogSec", "TimeoutStartSec", "TimeoutStopSec",
    "Restart", "RestartSec", "RestartPreventExitStatus", "User", "Group", "StateDirectory", "StateDirectoryMode",
    "ConfigurationDirectory", "ConfigurationDirectoryMode", "LoadCredential", "ExecReload",
}  # fmt: skip

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="comparing with root and switching users needs root"
)


def normalise(report: bytes) -> Snapshot:
    """The report's port and connection sets; a list the agent had to cap cannot be compared."""
    metrics = json.loads(report)["metrics"]
    groups = {
        "listen_tcp": (metrics.get("listening_tcp_ports", {}), "ports"),
        "listen_udp": (metrics.get("listening_udp_ports", {}), "ports"),
        "established": (metrics.get("tcp_connections", {}).get("established_connections", {}), "connections"),
    }
    out: Snapshot = {}
    for key, (group, field) in groups.items():
        items = group.get(field, [])
        if group.get("total", 0) > len(items):
            pytest.skip(f"{key}: {group['total']} entries on this machine, more than one report holds; "
                        "the sets cannot be compared")
        if field == "ports":
            out[key] = {(p["port"], p.get("interface")) for p in items}
        else:
            out[key] = {(c["remote_addr"], c["local_port"], c.get("local_interface")) for c in items}
    return out


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


def systemd_run_prefix(workdir: Path) -> List[str]:
    if shutil.which("systemd-run") is None or not Path("/run/systemd/system").is_dir():
        pytest.skip("systemd is not the running init here (container?): cannot start a transient service")
    return [
        "systemd-run", "--wait", "--pipe", "--quiet", "--collect",
        "-p", "User=nobody", "-p", "Group=nogroup", *unit_sandbox_properties(),
        "-p", f"BindReadOnlyPaths={workdir}", "--",
    ]  # fmt: skip


@pytest.fixture
def workdir() -> Iterator[Path]:
    """Config and placeholder PEM files readable by `nobody`, and a report directory it may write."""
    root = Path(tempfile.mkdtemp(prefix="defender-agent-unpriv-"))
    os.chmod(root, 0o755)
    for name in ("cert.pem", "key.pem", "ca.pem"):
        (root / name).write_text("placeholder\n")
        os.chmod(root / name, 0o644)
    (root / "agent.yaml").write_text(CONFIG.format(root=root))
    os.chmod(root / "agent.yaml", 0o644)
    (root / "out").mkdir(mode=0o777)
    os.chmod(root / "out", 0o777)
    try:
        yield root
    finally:
        shutil.rmtree(root)


def take(prefix: List[str], workdir: Path, name: str) -> Snapshot:
    """Run `defender-agent once` (as the user ``prefix`` gives) and read its report's sets."""
    out = workdir / "out" / f"{name}.json"
    argv = [sys.executable, "-m", "agent", "once", "--config", str(workdir / "agent.yaml")]
    # Under systemd-run (PrivateTmp, ProtectSystem) the report comes back through the --pipe'd stdout.
    to_file = not prefix or prefix[0] != "systemd-run"
    if to_file:
        argv += ["--output", str(out)]
    result = subprocess.run([*prefix, *argv], capture_output=True, timeout=120, cwd=str(REPO), check=False)
    assert result.returncode == 0, f"{prefix[0] if prefix else 'root'}: once failed: {result.stderr.decode()}"
    return normalise(out.read_bytes() if to_file else result.stdout)


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
        tcp_port, udp_port = listener.getsockname()[1], udp.getsockname()[1]
        client_port = client.getsockname()[1]
        yield {
            "listen_tcp": {(tcp_port, "lo")},
            "listen_udp": {(udp_port, "lo")},
            "established": {(f"127.0.0.1:{tcp_port}", client_port, "lo"),
                            (f"127.0.0.1:{client_port}", tcp_port, "lo")},
        }
    finally:
        for sock in (server, client, udp, listener):
            sock.close()


@pytest.mark.parametrize("runner", ["setpriv", "systemd-run"])
def test_unprivileged_sandboxed_agent_sees_what_root_sees(
    runner: str, own_sockets: Dict[str, Set[Tuple]], workdir: Path
) -> None:
    prefix = setpriv_prefix() if runner == "setpriv" else systemd_run_prefix(workdir)
    before = take([], workdir, "root-before")
    unprivileged = take(prefix, workdir, "unprivileged")
    after = take([], workdir, "root-after")
    for key, own in own_sockets.items():
        assert own <= before[key], f"root: own sockets {sorted(own - before[key])} missing from {key}"
        assert own <= unprivileged[key], f"{runner}: own sockets {sorted(own - unprivileged[key])} missing from {key}"
    # Other processes on the machine open and close sockets meanwhile: everything present
    # in both root reports must be seen, and nothing that root saw in neither.
    for key in unprivileged:
        stable = before[key] & after[key]
        seen_by_root = before[key] | after[key]
        missing = stable - unprivileged[key]
        extra = unprivileged[key] - seen_by_root
        assert not missing, f"{runner}: {key} hidden from the service user: {sorted(missing)[:10]}"
        assert len(extra) <= max(5, len(seen_by_root) // 20), (
            f"{runner}: {key} unexpected: {sorted(extra)[:10]}"
        )
