"""The logins collector against Debian's real sshd refusing real login attempts on a loopback port.

sshd logs through syslog(3) to /dev/log. Each test starts, in a private mount namespace (``unshare``: root
only), its own /dev with a /dev/log of its own and either rsyslogd writing an auth.log (traditional or
RFC 3339 timestamps) or systemd-journald writing journal files into a temporary directory, then sshd on a
free loopback port. sshpass + ssh make the attempts: a wrong password for root and for an unknown user.
Nothing of the machine's /dev, /run or logging is touched. Needs root, unshare, /usr/sbin/sshd, rsyslogd
and sshpass (`make mosquitto` installs openssh-server, rsyslog and sshpass).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping

import pytest

from agent.collectors.contract import BuildContext
from agent.collectors.security import logins
from agent.schema import Checker, Section

SSHD = "/usr/sbin/sshd"
RSYSLOGD = "/usr/sbin/rsyslogd"
JOURNALD = "/lib/systemd/systemd-journald"
pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all(os.path.exists(p) for p in (SSHD, RSYSLOGD)) or shutil.which("sshpass") is None
    or shutil.which("unshare") is None,
    reason="needs root, unshare, openssh-server, rsyslog and sshpass",
)

NAMESPACE = r"""
set -e
D=$1; LOGGER=$2
mkdir -p $D/olddev
mount --rbind /dev $D/olddev
mount -t tmpfs -o mode=755 tmpfs /dev
for n in null zero full random urandom tty ptmx; do touch /dev/$n; mount --bind $D/olddev/$n /dev/$n; done
mkdir /dev/pts; mount --bind $D/olddev/pts /dev/pts
mount -t tmpfs -o mode=755 tmpfs /run
mkdir -p /run/sshd
if [ "$LOGGER" = journald ]; then
  mkdir -p /run/systemd/journal /run/log/journal
  mount --bind $D/journal /run/log/journal
  /lib/systemd/systemd-journald > $D/logger.out 2>&1 &
  echo $! > $D/logger.pid
  for i in $(seq 100); do [ -S /run/systemd/journal/dev-log ] && break; sleep 0.05; done
  ln -s /run/systemd/journal/dev-log /dev/log
else
  /usr/sbin/rsyslogd -n -f $D/rsyslog.conf -i $D/rsyslog.pid > $D/logger.out 2>&1 &
  echo $! > $D/logger.pid
  for i in $(seq 100); do [ -S /dev/log ] && break; sleep 0.05; done
fi
/usr/sbin/sshd -D -f $D/sshd_config &
echo $! > $D/sshd.pid
wait
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Sshd:
    def __init__(self, root: Path, logger: str, template: str = "RSYSLOG_TraditionalFileFormat") -> None:
        self.root = root
        self.logger = logger
        self.port = free_port()
        self.auth_log = root / "auth.log"
        self.journal = root / "journal"
        self.journal.mkdir()
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / "hostkey")], check=True)
        (root / "sshd_config").write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {root}/hostkey\nUsePAM yes\n"
            "PasswordAuthentication yes\nKbdInteractiveAuthentication no\nLogLevel INFO\n"
            f"PidFile {root}/sshd-own.pid\n")
        (root / "rsyslog.conf").write_text(
            f'module(load="imuxsock")\nglobal(workDirectory="{root}")\n'
            f"auth,authpriv.* {self.auth_log};{template}\n")
        (root / "ns.sh").write_text(NAMESPACE)
        self.proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", str(root / "ns.sh"),
                                      str(root), logger], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):  # bounded: 10 s
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    if s.recv(64).startswith(b"SSH-"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        pytest.fail(f"sshd did not listen on port {self.port}: {(root / 'logger.out').read_text(errors='replace')}")

    def attempt(self, user: str, password: str = "wrong") -> None:
        """One login attempt with one password, refused."""
        result = subprocess.run(
            ["sshpass", "-p", password, "ssh", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
             "-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password", "-o", "LogLevel=ERROR",
             "-o", "NumberOfPasswordPrompts=1", "-o", "ConnectTimeout=10", "-p", str(self.port),
             f"{user}@127.0.0.1", "true"], check=False, capture_output=True, text=True, timeout=60)
        assert result.returncode != 0 and "Permission denied" in result.stderr, result.stderr

    def wait_for(self, text: str) -> None:
        """Until the logger has written ``text`` (bounded: 10 s)."""
        for _ in range(200):
            if text in self.logged():
                return
            time.sleep(0.05)
        pytest.fail(f"{text!r} never logged; have:\n{self.logged()}")

    def logged(self) -> str:
        if self.logger == "rsyslog":
            return self.auth_log.read_text(errors="replace") if self.auth_log.exists() else ""
        out = subprocess.run(["journalctl", f"--directory={self.journal}", "--no-pager", "-o", "cat"],
                             check=False, capture_output=True, text=True, timeout=30)
        return out.stdout

    def stop(self) -> None:
        for name in ("sshd.pid", "logger.pid"):
            with contextlib.suppress(OSError, ValueError):
                os.kill(int((self.root / name).read_text()), signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def rsyslog_sshd(tmp_path: Path, request: Any) -> Iterator[Sshd]:
    server = Sshd(tmp_path, "rsyslog", getattr(request, "param", "RSYSLOG_TraditionalFileFormat"))
    yield server
    server.stop()


@pytest.fixture
def journald_sshd(tmp_path: Path) -> Iterator[Sshd]:
    if not os.path.exists(JOURNALD):
        pytest.skip("no systemd-journald")
    server = Sshd(tmp_path, "journald")
    yield server
    server.stop()


def build(state_dir: Path, **given: Any) -> Any:
    checker = Checker("<test>")
    options = Section(fields=dict(logins.SPEC.options)).check_fields(given, "", checker, extra_known=())
    assert not checker.problems
    ctx = BuildContext(name="logins", state_dir=state_dir, timeout=10.0, report_interval=300.0,
                       max_list_items=100, logger=logging.getLogger("test.logins"))
    return logins.SPEC.build(ctx, options)


def values(collector: Any) -> Dict[str, Any]:
    return {s.name: s.value for s in collector.collect()}


def refused(server: Sshd, users: List[str]) -> None:
    for user in users:
        server.attempt(user)
        server.wait_for(f"Failed password for {'invalid user ' if user.startswith('nosuch') else ''}{user} ")


@pytest.mark.parametrize("rsyslog_sshd", ["RSYSLOG_TraditionalFileFormat", "RSYSLOG_FileFormat"], indirect=True)
def test_auth_log_counts_a_wrong_password_and_an_unknown_user_once_each(rsyslog_sshd: Sshd, tmp_path: Path):
    server = rsyslog_sshd
    state = tmp_path / "state"
    c = build(state, source="file", path=str(server.auth_log))
    refused(server, ["root"])  # before the first start: history, not counted
    assert values(c) == {"auth_failures": 0, "auth_failure_sources": [], "logins": 0}
    refused(server, ["root", "nosuchuser"])
    assert values(c) == {"auth_failures": 2, "auth_failure_sources": ["127.0.0.1"], "logins": 0}
    refused(server, ["nosuchuser2"])
    restarted = build(state, source="file", path=str(server.auth_log))  # a restart between two attempts
    refused(server, ["root"])
    assert values(restarted)["auth_failures"] == 2
    assert values(restarted)["auth_failures"] == 0


def test_auth_log_rotated_between_rounds(rsyslog_sshd: Sshd, tmp_path: Path):
    server = rsyslog_sshd
    c = build(tmp_path / "state", source="file", path=str(server.auth_log))
    values(c)
    refused(server, ["root"])
    os.rename(server.auth_log, str(server.auth_log) + ".1")  # logrotate, then rsyslog reopens (HUP)
    os.kill(int((server.root / "logger.pid").read_text()), signal.SIGHUP)
    refused(server, ["nosuchuser"])  # written to the new auth.log
    assert "Failed password for root " in Path(str(server.auth_log) + ".1").read_text()
    assert values(c) == {"auth_failures": 2, "auth_failure_sources": ["127.0.0.1"], "logins": 0}
    assert values(c)["auth_failures"] == 0


def test_real_journal_counts_each_attempt_once_across_a_restart(journald_sshd: Sshd, tmp_path: Path):
    server = journald_sshd
    state = tmp_path / "state"
    options: Mapping[str, Any] = {"source": "journal", "journal_directory": str(server.journal)}
    c = build(state, **options)
    refused(server, ["root"])  # history
    assert values(c)["auth_failures"] == 0  # first start: counts from now
    refused(server, ["nosuchuser", "root"])
    assert values(c) == {"auth_failures": 2, "auth_failure_sources": ["127.0.0.1"], "logins": 0}
    refused(server, ["nosuchuser3"])
    again = build(state, **options)
    refused(server, ["root"])
    assert values(again)["auth_failures"] == 2
    assert values(again)["auth_failures"] == 0


def test_an_unusable_saved_cursor_counts_from_now(journald_sshd: Sshd, tmp_path: Path):
    server = journald_sshd
    state = tmp_path / "state"
    state.mkdir()
    (state / "logins.logins.json").write_text(json.dumps(
        {"version": 1, "source": "journal", "position": {"cursor": "not-a-cursor"}, "pending": []}))
    refused(server, ["root"])  # before the start: not counted
    c = build(state, source="journal", journal_directory=str(server.journal))
    assert values(c)["auth_failures"] == 0  # journalctl refused the cursor: from now on
    refused(server, ["root"])
    assert values(c)["auth_failures"] == 1
