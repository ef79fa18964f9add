"""`defender-agent check` says, one line per collector, when the user it runs as cannot read a collector's source
(``CollectorSpec.reads``): run as root and as ``nobody`` (setpriv) on a root-only file and the system journal."""

from __future__ import annotations

import grp
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator, List

import pytest

from agent.collectors.access import access_problems, journal_problem, path_problem
from tests.procs import plain_env

CONFIG = """\
thing_name: gw-1
state_dir: {d}/state
sinks: [{{type: textfile, path: {d}/a.prom}}]
collectors:
  - type: logins
    source: file
    path: {d}/secret.log
  - type: logins
    name: j
    source: journal
    metrics: {{auth_failures: j_failures}}
custom_metrics:
  auth_failures: number
  auth_failure_sources: ip-address-list
  logins: number
  j_failures: number
"""


@pytest.fixture
def world_readable_dir() -> Iterator[Path]:
    """A directory ``nobody`` can enter (pytest's tmp_path is root-only)."""
    d = Path(tempfile.mkdtemp(prefix="check-access-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d)


def check_as(config: Path, prefix: List[str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*prefix, sys.executable, "-m", "agent", "check", "--config", str(config)], check=False,
                          capture_output=True, text=True, env=plain_env(), cwd="/", timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv")
def test_check_names_each_collector_whose_source_the_user_cannot_read(world_readable_dir: Path):
    d = world_readable_dir
    (d / "secret.log").write_text("x\n")
    (d / "secret.log").chmod(0o600)
    config = d / "agent.yaml"
    config.write_text(CONFIG.format(d=d))
    config.chmod(0o644)
    as_root = check_as(config, [])
    assert "collector 'logins' cannot read" not in as_root.stderr
    as_nobody = check_as(config, ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"])
    lines = [line for line in as_nobody.stderr.splitlines() if "cannot read its source" in line]
    assert f"collectors[0]: collector 'logins' cannot read its source as user nobody: cannot read {d}/secret.log" \
        in lines[0]
    if any(p.is_dir() for p in (Path("/var/log/journal"), Path("/run/log/journal"))):
        assert len(lines) == 2
        assert "collectors[1]: collector 'j' cannot read its source as user nobody: the system journal is " \
            "readable only by root and the groups" in lines[1]
    (d / "secret.log").chmod(0o644)
    again = check_as(config, ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"])
    assert "collector 'logins' cannot read" not in again.stderr


def test_journal_problem_by_uid_and_group(tmp_path: Path):
    journal = tmp_path / "journal"
    assert journal_problem(uid=1000, groups=[], dirs=(journal,)) is not None  # no journal at all
    assert "use source: file" in (journal_problem(uid=0, dirs=(journal,)) or "")
    journal.mkdir()
    assert journal_problem(uid=0, dirs=(journal,)) is None
    assert "readable only by root" in (journal_problem(uid=1000, groups=[], dirs=(journal,)) or "")
    try:
        gid = grp.getgrnam("systemd-journal").gr_gid
    except KeyError:
        pytest.skip("no systemd-journal group")
    assert journal_problem(uid=1000, groups=[gid], dirs=(journal,)) is None


def test_path_problem_and_access_problems(tmp_path: Path):
    assert path_problem(str(tmp_path)) is None
    assert path_problem(str(tmp_path / "nope")) == f"{tmp_path}/nope does not exist"
    assert access_problems([str(tmp_path), str(tmp_path / "nope"), str(tmp_path / "nope")],
                           probe=path_problem) == [f"{tmp_path}/nope does not exist"]
