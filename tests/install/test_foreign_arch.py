"""The package on Raspberry Pi OS's architectures: Debian bookworm's armhf (32-bit) and arm64 userland.

No ARM machine here, so each architecture runs under qemu-user: `debootstrap --foreign` fetches
bookworm's python3, python3-awscrt, -psutil, -cbor2 and -yaml built for that architecture (what
`apt install ./defender-agent_VERSION_all.deb` pulls in on a Pi), the packages and our .deb are
unpacked into one root (maintainer scripts do not run: that part is make systemd-test's), and
the package's own /usr/bin/defender-agent runs on that root's interpreter, `qemu-ARCH-static -L ROOT`.
It talks mutual TLS to the test's mosquitto on loopback through Debian's armhf/arm64 build of
awscrt (aws-lc and s2n), nothing compiled by us.

Enabled by `make test` ($DEFENDER_AGENT_FOREIGN=armhf,arm64); run alone it is skipped.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

from devkit.broker import Broker
from devkit.certs import Pki
from devkit.emulator.responder import Responder
from devkit.rig import ledger
from tests.delivery.conftest import THING, config_text
from tests.procs import plain_env
from tests.systemd.container import debian_mirror, host_apt_sources

FOREIGN_ENV = "DEFENDER_AGENT_FOREIGN"
DEB_ENV = "DEFENDER_AGENT_DEB"
QEMU = {"armhf": ("qemu-arm-static", "armv7l"), "arm64": ("qemu-aarch64-static", "aarch64")}
LIBRARIES = ["python3", "python3-awscrt", "python3-psutil", "python3-cbor2", "python3-yaml"]
ROOTS = Path(__file__).resolve().parents[2] / "build" / "foreign"


def wanted() -> List[str]:
    return [a for a in os.environ.get(FOREIGN_ENV, "").split(",") if a]


@pytest.fixture(scope="module", params=sorted(QEMU))
def root(request: pytest.FixtureRequest) -> Iterator[Path]:
    """A bookworm userland of ``arch`` with Debian's libraries and our package unpacked in it."""
    arch = request.param
    if arch not in wanted():
        pytest.skip(f"${FOREIGN_ENV} does not name {arch} (`make test` sets it)")
    qemu, _ = QEMU[arch]
    for tool in ("debootstrap", qemu, "dpkg-deb"):
        assert shutil.which(tool), f"{tool} is missing (make test installs debootstrap and qemu-user-static)"
    deb = Path(os.environ.get(DEB_ENV, ""))
    assert deb.is_file(), f"${DEB_ENV} must name the .deb"
    mirror = debian_mirror(host_apt_sources())
    assert mirror, "no bookworm main mirror in this host's apt sources"
    path = ROOTS / arch
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    try:
        subprocess.run(["debootstrap", "--foreign", f"--arch={arch}", "--variant=minbase",
                        f"--include={','.join(LIBRARIES)}", "bookworm", str(path), mirror],
                       check=True, capture_output=True, timeout=600)
        for package in [*sorted((path / "var/cache/apt/archives").glob("*.deb")), deb]:
            subprocess.run(["dpkg-deb", "-x", str(package), str(path)], check=True, timeout=120)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def on(root: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """/usr/bin/defender-agent ARGS on ``root``'s interpreter, under qemu-user."""
    arch = root.name
    command = [QEMU[arch][0], "-L", str(root), str(root / "usr/bin/python3"), str(root / "usr/bin/defender-agent"),
               *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False, cwd="/",
                          env=plain_env())


def versions(root: Path) -> Dict[str, str]:
    code = ("import sys, platform; sys.path.insert(0, '/usr/share/defender-agent'); import awscrt, psutil, cbor2, "
            "yaml, agent; print(platform.machine(), sys.version.split()[0], psutil.__version__, yaml.__version__, "
            "agent.__file__)")
    arch = root.name
    out = subprocess.run([QEMU[arch][0], "-L", str(root), str(root / "usr/bin/python3"), "-c", code],
                         capture_output=True, text=True, timeout=120, check=True, cwd="/", env=plain_env()).stdout
    machine, python, psutil_version, yaml_version, agent_file = out.split()
    return {"machine": machine, "python": python, "psutil": psutil_version, "yaml": yaml_version, "agent": agent_file}


@pytest.mark.broker
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_check_once_validate_and_run_on_the_pis_userland(
    root: Path, pki: Pki, broker: Broker, responder: Responder, tmp_path: Path
) -> None:
    found = versions(root)
    print(f"\n{root.name}: {found} (host {platform.machine()})")
    assert found["machine"] == QEMU[root.name][1], found
    assert found["agent"].endswith("/usr/share/defender-agent/agent/__init__.py"), found
    state = tmp_path / "state"
    config = tmp_path / "agent.yaml"
    config.write_text(config_text(pki, broker.port, state, reply_timeout=20) + (
        "collectors:\n  - type: listening_ports\n  - type: tcp_connections\n  - type: network_stats\n"
        "  - type: system\n    metrics: [cpu_usage, load_average]\n"
        "custom_metrics:\n  cpu_usage: {type: number}\n  load_average: {type: number-list}\n"))
    config.chmod(0o600)
    check = on(root, "check", "--config", str(config))
    assert check.returncode == 0 and f"OK (thing '{THING}'" in check.stdout, check.stdout + check.stderr
    report = tmp_path / "report.json"
    once = on(root, "once", "--config", str(config), "--output", str(report))
    assert once.returncode == 0, once.stderr
    valid = on(root, "validate", str(report))
    assert valid.returncode == 0 and "valid (json, long keys" in valid.stdout, valid.stdout + valid.stderr
    run = on(root, "run", "--config", str(config), "--reports", "2")
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr[-3000:]
    assert sorted(ledger(state).values()) == ["accepted", "accepted"]
