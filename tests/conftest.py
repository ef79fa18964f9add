"""Suite-wide: in CI the broker tests must run, not skip; and the checkout must be reachable by the tests'
unprivileged users.

Several tests run the checkout's own venv and package as ``nobody`` (setpriv) to show what the service user
sees. A checkout under a directory only root may enter (``d=$(mktemp -d) && git clone . $d`` makes a 0700
directory) would make them fail with "No module named agent", for a reason that is the test machine's, not
the agent's. So, as root, the suite adds search permission (o+x: enter, not list) to the checkout's
directories that lack it, and takes it back when the session ends.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import List

import pytest

from devkit.broker import find_mosquitto


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("CI") and find_mosquitto() is None:
        raise pytest.UsageError(
            "CI is set but mosquitto is not installed: the broker tests would be skipped. "
            "Run `make test`, which installs it with apt-get."
        )


ROOT = Path(__file__).resolve().parent.parent
_OPENED: List[Path] = []


def pytest_sessionstart(session: pytest.Session) -> None:
    if os.geteuid() != 0:
        return
    for directory in [ROOT, *ROOT.parents]:
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH:
            directory.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
            _OPENED.append(directory)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    while _OPENED:
        directory = _OPENED.pop()
        directory.chmod(stat.S_IMODE(directory.stat().st_mode) & ~stat.S_IXOTH)
