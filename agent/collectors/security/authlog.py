"""Authentication log lines -> failed and successful logins (pure; the ``logins`` collector reads the lines).

A line counts only by the program that wrote it (the syslog tag of a file line; in the journal
``SYSLOG_IDENTIFIER``, checked against the sender's ``_EXE`` or ``_COMM``, which journald records) and only
when its message *starts* with the text that program writes, so a user name, a command line or another
program's message that quotes "Failed password for root from 1.2.3.4" is never a login attempt. Where
the message carries a user-chosen field before the address (sshd's user name), the address is the last
``from ADDR port N`` of the line, which is the one sshd wrote.

What counts, per program:

- sshd (also ``sshd-session``, ``sshd-auth`` of OpenSSH 9.8+): ``Failed <method> for [invalid user] U from
  A port P`` is one failed attempt; ``Invalid user U from A port P`` (written once per connection, before
  its first attempt) is one failed attempt when no ``Failed ... for invalid user`` line of the same
  connection (address and port) follows, so an unknown user who tries three passwords is three failures
  and one who only connects (a name scan) is one. ``Accepted <method> for U from A port P`` is a login.
  The other lines sshd writes for the same attempt are recognised and not counted again:
  ``pam_unix(sshd:auth): authentication failure``, ``error: PAM: Authentication failure for ...``,
  ``PAM N more authentication failures``, ``maximum authentication attempts exceeded``.
- login: ``FAILED LOGIN`` (shadow's ``FAILED LOGIN (1) on '/dev/tty1' FOR 'x', Authentication failure``
  and util-linux's ``FAILED LOGIN 1 FROM host FOR x, ...``) is one failure;
  ``pam_unix(login:session): session opened for user U`` is a login.
- su: ``FAILED SU (to root) alice on pts/0`` (util-linux) or ``FAILED su for root by alice`` (shadow).
- sudo: ``alice : 3 incorrect password attempts ; TTY=...`` is three failures; ``alice : user NOT in
  sudoers ; ...`` is one.

rsyslog's ``message repeated N times: [ MSG ]`` counts MSG N times.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

from agent.collectors.standard.sockets import plain_ip

SSHD = frozenset({"sshd", "sshd-session", "sshd-auth"})
PROGRAMS = SSHD | {"login", "su", "sudo"}
# where a journal entry's _EXE must lie (writable by root only): Debian's and the usual others
SYSTEM_DIRS = frozenset({"/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/lib/openssh", "/usr/libexec/openssh",
                         "/usr/libexec", "/usr/local/sbin", "/usr/local/bin"})

# A syslog line as rsyslog writes it: traditional (RSYSLOG_TraditionalFileFormat, Debian's default up to
# bookworm) or RFC 3339 (RSYSLOG_FileFormat, Debian 13's default), then "host tag[pid]: message".
_TRADITIONAL = r"[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d"
_RFC3339 = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:?\d\d)"
_SYSLOG_LINE = re.compile(
    rf"(?:<\d{{1,3}}>)?(?:{_TRADITIONAL}|{_RFC3339}) \S+ (?P<tag>[^\s\[\]:]+)(?:\[\d+\])?: ?(?P<msg>.*)"
)
_REPEATED = re.compile(r"message repeated (?P<n>\d{1,6}) times: \[ ?(?P<msg>.*?) ?\]")

_FROM = r" from (?P<addr>[0-9A-Fa-f:.]+) port (?P<port>\d{1,5})"
_SSHD_FAILED = re.compile(
    rf"Failed (?P<method>[\w/-]+) for (?P<invalid>invalid user )?(?P<user>.*){_FROM}(?: ssh\d?)?"
    r"(?:: \S+ \S+)?(?: \[preauth\])?"
)
_SSHD_INVALID = re.compile(r"Invalid user (?P<user>.*) from (?P<addr>[0-9A-Fa-f:.]+)(?: port (?P<port>\d{1,5}))?"
                           r"(?: \[preauth\])?")
_SSHD_ACCEPTED = re.compile(rf"Accepted (?P<method>[\w/-]+) for (?P<user>.*){_FROM}(?: ssh\d?)?(?:: \S+ \S+)?")
_LOGIN_FAILED = re.compile(
    r"FAILED LOGIN \(?\d+\)?(?: on '[^']*')?(?: (?:from|FROM) '?(?P<host>[^' ]*)'?)?(?: ON \S+)? FOR .*"
)
_LOGIN_SESSION = re.compile(r"pam_unix\(login:session\): session opened for user .*")
_SU_FAILED = re.compile(r"FAILED (?:SU \(to .*|su for .*)")
_SUDO_INCORRECT = re.compile(r"\s*\S+ : (?P<n>\d{1,6}) incorrect password attempts? ;.*")
_SUDO_NOT_IN_SUDOERS = re.compile(r"\s*\S+ : (?:user NOT in sudoers|user NOT authorized on host) ;.*")

MAX_PENDING = 256  # sshd connections of unknown users whose "Invalid user" line counted, kept for pairing


@dataclass(frozen=True)
class AuthEvent:
    """What one message means: ``failures`` attempts failed, ``logins`` succeeded.

    ``opens`` / ``closes``: the sshd connection (address, port) whose ``Invalid user`` line this is /
    whose ``Failed ... for invalid user`` line this is (see :class:`Tally`)."""

    failures: int = 0
    logins: int = 0
    address: Optional[str] = None
    opens: Optional[Tuple[str, str]] = None
    closes: Optional[Tuple[str, str]] = None


def normal_ip(text: Optional[str]) -> Optional[str]:
    """``text`` as a plain IP address (IPv4-mapped IPv6 as IPv4), or None when it is not one."""
    return plain_ip(text) if text else None


def split_syslog_line(line: str) -> Optional[Tuple[str, str]]:
    """(program, message) of one line of a syslog file, or None when it is not one."""
    m = _SYSLOG_LINE.fullmatch(line.rstrip("\r\n"))
    if m is None:
        return None
    return m.group("tag"), m.group("msg")


def classify(program: str, message: str) -> Optional[AuthEvent]:
    """What ``message`` from ``program`` means for logins, or None when nothing."""
    if program not in PROGRAMS:
        return None
    repeated = _REPEATED.fullmatch(message)
    if repeated is not None:
        inner = classify(program, repeated.group("msg"))
        if inner is None or (not inner.failures and not inner.logins):
            return inner
        n = int(repeated.group("n"))
        return AuthEvent(inner.failures * n, inner.logins * n, inner.address)  # no pairing for repeats
    if program in SSHD:
        return _sshd(message)
    if program == "login":
        m = _LOGIN_FAILED.fullmatch(message)
        if m is not None:
            return AuthEvent(failures=1, address=normal_ip(m.group("host")))
        if _LOGIN_SESSION.fullmatch(message):
            return AuthEvent(logins=1)
        return None
    if program == "su":
        return AuthEvent(failures=1) if _SU_FAILED.fullmatch(message) else None
    m = _SUDO_INCORRECT.fullmatch(message)  # sudo
    if m is not None:
        return AuthEvent(failures=int(m.group("n")))
    return AuthEvent(failures=1) if _SUDO_NOT_IN_SUDOERS.fullmatch(message) else None


def _sshd(message: str) -> Optional[AuthEvent]:
    first = message[:1]
    if first == "F":
        m = _SSHD_FAILED.fullmatch(message)
        if m is None:
            return None
        addr = normal_ip(m.group("addr"))
        if m.group("invalid"):
            return AuthEvent(failures=1, address=addr, closes=(addr or m.group("addr"), m.group("port")))
        return AuthEvent(failures=1, address=addr)
    if first == "I":
        m = _SSHD_INVALID.fullmatch(message)
        if m is None:
            return None
        addr = normal_ip(m.group("addr"))
        return AuthEvent(failures=1, address=addr, opens=(addr or m.group("addr"), m.group("port") or ""))
    if first == "A":
        m = _SSHD_ACCEPTED.fullmatch(message)
        return AuthEvent(logins=1) if m is not None else None
    return None


@dataclass
class Tally:
    """Counts of one period, and the sshd connections of unknown users already counted once.

    ``pending`` survives the period (and a restart, in the collector's state): an ``Invalid user`` line
    counted in one period and its ``Failed ... for invalid user`` line read in the next are still one
    attempt."""

    failures: int = 0
    logins: int = 0
    sources: Dict[str, None] = field(default_factory=dict)  # insertion-ordered set
    pending: Dict[Tuple[str, str], None] = field(default_factory=dict)

    def add(self, event: Optional[AuthEvent]) -> None:
        if event is None:
            return
        failures = event.failures
        if event.opens is not None:
            self.pending.pop(event.opens, None)
            self.pending[event.opens] = None
            while len(self.pending) > MAX_PENDING:
                del self.pending[next(iter(self.pending))]
        elif event.closes is not None:
            for key in (event.closes, (event.closes[0], "")):  # "" : an old sshd's line without the port
                if key in self.pending:
                    del self.pending[key]
                    failures = 0  # its "Invalid user" line counted this attempt
                    break
        self.failures += failures
        self.logins += event.logins
        if failures and event.address is not None:
            self.sources[event.address] = None

    def add_syslog_line(self, line: str) -> None:
        parts = split_syslog_line(line)
        if parts is not None:
            self.add(classify(*parts))

    def add_journal_entry(self, entry: Mapping[str, Any]) -> None:
        self.add(classify_journal_entry(entry))

    def new_period(self) -> None:
        """Start the next period's counts; the pending connections stay."""
        self.failures = 0
        self.logins = 0
        self.sources = {}

    def pending_list(self) -> List[List[str]]:
        return [list(key) for key in self.pending]

    def restore_pending(self, items: Iterable[Any]) -> None:
        for item in items:
            if isinstance(item, list) and len(item) == 2 and all(isinstance(x, str) for x in item):
                self.pending[(item[0], item[1])] = None


def journal_text(value: Any) -> Optional[str]:
    """A journal field of ``journalctl --output=json``: a string, an array of bytes (not UTF-8), or null."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(b, int) and 0 <= b < 256 for b in value):
        return bytes(value).decode("utf-8", "replace")
    return None


def classify_journal_entry(entry: Mapping[str, Any]) -> Optional[AuthEvent]:
    """One journal entry: the program is ``SYSLOG_IDENTIFIER``, and the sending process must be that program
    where the journal recorded it: ``_EXE`` (the executable, which journald reads from /proc) named so in a
    system directory, else ``_COMM``. ``logger -t sshd`` or a copy of a program named ``sshd`` in a user's
    directory is not sshd."""
    program = journal_text(entry.get("SYSLOG_IDENTIFIER"))
    message = journal_text(entry.get("MESSAGE"))
    if program is None or message is None or program not in PROGRAMS:
        return None
    exe = journal_text(entry.get("_EXE"))
    if exe is not None:
        directory, _, name = exe.rpartition("/")
        if name != program or directory not in SYSTEM_DIRS:
            return None
    else:
        comm = journal_text(entry.get("_COMM"))
        if comm is not None and comm != program[:15]:
            return None
    return classify(program, message)
