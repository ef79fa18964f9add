"""The container fixture for `make systemd-test`, the figures the checks print, and a closing summary.

$DEFENDER_AGENT_SYSTEMD_DEB names the package to test; without it every test here is skipped (see
test_package_in_container.py). With it, a missing prerequisite is a failure, never a skip.
$DEFENDER_AGENT_KEEP_CONTAINER=1 keeps the rootfs (and the journal in it) for debugging.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Any, Callable, Iterator, List, Optional, Tuple

import pytest

from devkit.certs import make_pki
from tests.systemd.container import (
    PREFIX,
    Container,
    debian_mirror,
    debian_sources,
    host_apt_sources,
    reap_stale,
)
from tests.systemd.rig import Rig

DEB_ENV = "DEFENDER_AGENT_SYSTEMD_DEB"
KEEP_ENV = "DEFENDER_AGENT_KEEP_CONTAINER"
MIRROR_ENV = "DEFENDER_AGENT_DEBIAN_MIRROR"
TOOLS = ("debootstrap", "systemd-nspawn", "nsenter")
MIN_FREE_BYTES = 2 << 30  # the rootfs is about 450 MB; apt's archives and the journal come on top
WORK_BASES = ("/var/tmp", "/tmp")

FIGURES: List[Tuple[str, str]] = []  # (test, line) for the closing summary
TIMINGS: List[Tuple[str, float]] = []
_SESSION_START = time.monotonic()


def prerequisites() -> List[str]:
    problems = []
    if os.geteuid() != 0:
        problems.append("must run as root (debootstrap, systemd-nspawn and nsenter need it)")
    for tool in TOOLS:
        if shutil.which(tool) is None:
            problems.append(f"{tool} is not installed (apt-get install -y debootstrap systemd-container)")
    return problems


def work_base() -> Path:
    """/var/tmp unless it is short of space (then /tmp); fails when neither has MIN_FREE_BYTES."""
    for base in WORK_BASES:
        if os.path.isdir(base) and shutil.disk_usage(base).free >= MIN_FREE_BYTES:
            return Path(base)
    free = {b: shutil.disk_usage(b).free >> 20 for b in WORK_BASES if os.path.isdir(b)}
    pytest.fail(f"no room for the container: need {MIN_FREE_BYTES >> 20} MiB free, have (MiB) {free}",
                pytrace=False)


def mirror_and_sources() -> Tuple[str, List[str]]:
    sources = debian_sources(host_apt_sources())
    mirror = os.environ.get(MIRROR_ENV) or debian_mirror(sources)
    if not mirror:
        pytest.fail(f"no Debian bookworm `main` mirror in /etc/apt/sources.list or sources.list.d; "
                    f"name one in ${MIRROR_ENV}", pytrace=False)
    lines = [s.line() for s in sources] or [f"deb {mirror} bookworm main"]
    return mirror, lines


def _interrupt(signum: int, frame: Optional[FrameType]) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="session")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    deb = Path(os.environ.get(DEB_ENV, ""))
    problems = prerequisites()
    if not deb.is_file():
        problems.append(f"${DEB_ENV}={deb} is not a file (make deb builds it)")
    if problems:
        pytest.fail("systemd-test cannot run: " + "; ".join(problems), pytrace=False)
    mirror, sources = mirror_and_sources()
    base = work_base()
    reap_stale(base)
    workdir = Path(tempfile.mkdtemp(prefix=PREFIX, dir=base))
    os.chmod(workdir, 0o755)
    box = Container(workdir, workdir.name.replace("_", "x")[-40:])  # a machine name: no "_", no "-" at the end
    keep = os.environ.get(KEEP_ENV, "") not in ("", "0")
    # SIGTERM (a CI timeout) tears down like Ctrl-C does; nspawn itself gets SIGTERM if we die.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    made: Optional[Rig] = None
    try:
        made = Rig(box, deb, make_pki(tmp_path_factory.mktemp("pki")))
        made.setup(mirror, sources)
        FIGURES.append(("boot", f"systemctl is-system-running --wait: {made.boot_state}"
                                + (f"; failed units: {made.failed_units}" if made.failed_units else "")))
        FIGURES.append(("setup", f"mirror {mirror}; container sources: {'; '.join(sources)}"))
        yield made
    finally:
        try:
            start = time.monotonic()
            box.close(keep=keep)
            TIMINGS.append(("teardown (power off, remove rootfs)", time.monotonic() - start))
            if keep:
                FIGURES.append(("container", f"kept {box.root} (journal: /root/journal.txt and "
                                             f"journalctl -D {box.root}/var/log/journal)"))
        finally:
            signal.signal(signal.SIGTERM, previous)
            if made is not None:
                TIMINGS[:0] = list(made.timings.items())


@pytest.fixture
def figure(request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]) -> Callable[[str], None]:
    """Print a measured figure now (past the capture) and again in the closing summary."""

    def say(line: str) -> None:
        FIGURES.append((request.node.name, line))
        with capsys.disabled():
            print(f"\n    {line}", end="")

    return say


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" and "_in_container.py::" in report.nodeid:
        TIMINGS.append((report.nodeid.rsplit("::", 1)[-1], report.duration))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES and not TIMINGS:
        return
    write = terminalreporter.write_line
    terminalreporter.section("systemd-test figures")
    for test, line in FIGURES:
        write(f"{test}: {line}")
    terminalreporter.section("systemd-test time per phase (s)")
    for name, seconds in TIMINGS:
        write(f"{seconds:7.1f}  {name}")
    write(f"{time.monotonic() - _SESSION_START:7.1f}  total (pytest session)")
