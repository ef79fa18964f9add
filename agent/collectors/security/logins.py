"""The ``logins`` collector: failed and successful logins since the previous sample, from the journal or a file.

What a line means is :mod:`agent.collectors.security.authlog`'s; this module reads the lines and keeps the
position reached in ``state_dir/logins.<name>.json`` (the journal cursor, or the file's device, inode and
offset), saved after every round, so a restart neither counts an event twice nor loses one, and a first
start (no state) counts from now. A round reads at most ``max_lines`` lines (and, from a file, at most
``max_bytes``) and stops at half its timeout; what is left is read in the next round.

- ``source: journal`` runs ``journalctl --output=json --after-cursor=CURSOR SYSLOG_IDENTIFIER=sshd ...``
  (python3-systemd is not a dependency) and keeps the cursor of the last entry it read.
- ``source: file`` reads a syslog file (``/var/log/auth.log``) from the saved offset, complete lines only.
  When the file at ``path`` has another inode than the saved one (logrotate moved it), the rest of the
  old file is read first where it now lies (``path.1``, or another uncompressed file beside it with that
  inode), then the new one from its start; a file shorter than the saved offset (``copytruncate``) is read
  from its start.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import IO, Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from agent.catalog import BUILTIN_METRICS, BuiltinMetric
from agent.collectors.access import JOURNAL
from agent.collectors.contract import BuildContext, CollectorSpec
from agent.collectors.metric_names import describes_of, emits_of, metric_names_option, selected
from agent.collectors.security.authlog import PROGRAMS, Tally
from agent.collectors.security.state import StateKeeper, state_path
from agent.errors import CollectorError
from agent.report.model import Sample
from agent.schema import Enum, Int, PathStr, Size

METRICS: Mapping[str, BuiltinMetric] = BUILTIN_METRICS["logins"]
STATE_VERSION = 1
DEFAULT_PATH = "/var/log/auth.log"
JOURNALD_RUNTIME = Path("/run/systemd/journal")  # exists where systemd-journald runs
JOURNALCTL = "journalctl"
DEFAULT_MAX_LINES = 100_000
DEFAULT_MAX_BYTES = 32 * 2**20
MAX_LINE = 64 * 1024  # a longer "line" is skipped whole
_ROTATED_SUFFIXES = (".1", ".0", "-old")
_COMPRESSED = (".gz", ".xz", ".bz2", ".zst", ".lz4")


def resolve_source(source: str, runtime: Path = JOURNALD_RUNTIME) -> str:
    """``auto`` -> ``journal`` where systemd-journald runs, else ``file``."""
    if source != "auto":
        return source
    return JOURNAL if runtime.is_dir() else "file"


# -- file ---------------------------------------------------------------------------------------------------


def find_rotated(path: str, dev: int, inode: int) -> Optional[str]:
    """Where the file that was ``path`` (``dev``, ``inode``) lies now: ``path.1`` and the like first, then any
    uncompressed file beside it whose name starts with its name. None when it is gone."""
    base = Path(path)
    candidates = [str(base) + s for s in _ROTATED_SUFFIXES]
    with contextlib.suppress(OSError):
        candidates += sorted(str(p) for p in base.parent.iterdir()
                             if p.name.startswith(base.name) and p.name != base.name
                             and not p.name.endswith(_COMPRESSED))
    for candidate in dict.fromkeys(candidates):
        try:
            st = os.stat(candidate)
        except OSError:
            continue
        if st.st_ino == inode and st.st_dev == dev:
            return candidate
    return None


def read_lines(handle: IO[bytes], offset: int, budget: int, max_lines: int,
               on_line: Callable[[str], None]) -> Tuple[int, int, int, bool]:
    """Feed the complete lines from ``offset`` to ``on_line``: (new offset, bytes used, lines read, at end).

    Stops at ``budget`` bytes or ``max_lines`` lines; a partial last line is left for the next read."""
    handle.seek(offset)
    used = lines = 0
    rest = b""
    while used < budget and lines < max_lines:
        chunk = handle.read(min(1 << 16, budget - used))
        if not chunk:
            return offset, used, lines, True
        used += len(chunk)
        data = rest + chunk
        start = 0
        while lines < max_lines:
            end = data.find(b"\n", start)
            if end < 0:
                break
            on_line(data[start:end].decode("utf-8", "replace"))
            lines += 1
            offset += end + 1 - start
            start = end + 1
        rest = data[start:]
        if len(rest) > MAX_LINE:  # no newline in sight: skip it
            offset += len(rest)
            rest = b""
        if lines >= max_lines:
            break
    return offset, used, lines, False


class FileReader:
    """Reads a syslog file from a saved (dev, inode, offset), through rotation."""

    def __init__(self, path: str, max_bytes: int, max_lines: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.max_lines = max_lines

    def start(self) -> Dict[str, Any]:
        """The position of a first start: the end of the file as it is now."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise CollectorError(self._missing()) from None
        except OSError as exc:
            raise CollectorError(f"cannot read {self.path}: {exc.strerror or exc}") from None
        return {"dev": st.st_dev, "inode": st.st_ino, "offset": st.st_size}

    def _missing(self) -> str:
        return (f"{self.path}: no such file (no syslog daemon writes it? where systemd-journald runs, use "
                "source: journal)")

    def read(self, pos: Mapping[str, Any], on_line: Callable[[str], None]) -> Dict[str, Any]:
        dev, inode, offset = pos.get("dev"), pos.get("inode"), int(pos.get("offset") or 0)
        budget, lines_left = self.max_bytes, self.max_lines
        try:
            handle = open(self.path, "rb")  # noqa: SIM115 (closed below)
        except FileNotFoundError:
            handle = None
        except OSError as exc:
            raise CollectorError(f"cannot read {self.path}: {exc.strerror or exc}") from None
        try:
            st = os.fstat(handle.fileno()) if handle is not None else None
            if inode is not None and (st is None or (st.st_ino, st.st_dev) != (inode, dev)):
                old = find_rotated(self.path, int(dev or 0), int(inode))
                if old is not None:  # the rest of the rotated file first
                    with open(old, "rb") as rotated:
                        offset, used, n, at_end = read_lines(rotated, offset, budget, lines_left, on_line)
                    if not at_end:
                        return {"dev": dev, "inode": inode, "offset": offset}
                    budget, lines_left = budget - used, lines_left - n
                offset = 0
            if st is None or handle is None:
                if inode is None and not pos.get("rotated"):  # never seen: not a rotation in progress
                    raise CollectorError(self._missing())
                return {"dev": None, "inode": None, "offset": 0, "rotated": True}
            if st.st_size < offset:  # truncated in place (copytruncate)
                offset = 0
            offset, _, _, _ = read_lines(handle, offset, max(budget, 0), max(lines_left, 0), on_line)
            return {"dev": st.st_dev, "inode": st.st_ino, "offset": offset}
        finally:
            if handle is not None:
                handle.close()


# -- journal ------------------------------------------------------------------------------------------------


def journal_argv(cursor: Optional[str], directory: Optional[str], journalctl: str = JOURNALCTL) -> List[str]:
    """The journalctl command line of one round: the entries of the login programs after ``cursor``."""
    argv = [journalctl, "--output=json", "--no-pager", "--quiet",
            "--output-fields=MESSAGE,SYSLOG_IDENTIFIER,_COMM,_EXE"]
    if directory:
        argv.append(f"--directory={directory}")
    if cursor:
        argv.append(f"--after-cursor={cursor}")
    argv += [f"SYSLOG_IDENTIFIER={p}" for p in sorted(PROGRAMS)]
    return argv


def journal_tail_argv(directory: Optional[str], journalctl: str = JOURNALCTL) -> List[str]:
    """The journalctl command line that shows the newest entry of the whole journal (a first start's cursor)."""
    argv = [journalctl, "--output=json", "--no-pager", "--quiet", "--lines=1", "--output-fields=__CURSOR"]
    if directory:
        argv.append(f"--directory={directory}")
    return argv


class CursorLost(Exception):
    """journalctl cannot seek to the saved cursor (a damaged state file, a journal from another machine)."""


class JournalReader:
    def __init__(self, directory: Optional[str], max_lines: int, journalctl: str = JOURNALCTL) -> None:
        self.directory = directory
        self.max_lines = max_lines
        self.journalctl = journalctl

    def start(self, timeout: float) -> Dict[str, Any]:
        cursor: List[Optional[str]] = [None]

        def keep(entry: Mapping[str, Any]) -> None:
            cursor[0] = entry.get("__CURSOR") if isinstance(entry.get("__CURSOR"), str) else cursor[0]

        self._run(journal_tail_argv(self.directory, self.journalctl), keep, 1, timeout)
        return {"cursor": cursor[0]}

    def read(self, pos: Mapping[str, Any], on_entry: Callable[[Mapping[str, Any]], None],
             timeout: float) -> Dict[str, Any]:
        cursor: List[Optional[str]] = [pos.get("cursor") if isinstance(pos.get("cursor"), str) else None]

        def take(entry: Mapping[str, Any]) -> None:
            on_entry(entry)
            if isinstance(entry.get("__CURSOR"), str):
                cursor[0] = entry["__CURSOR"]

        self._run(journal_argv(cursor[0], self.directory, self.journalctl), take, self.max_lines, timeout)
        return {"cursor": cursor[0]}

    def _run(self, argv: Sequence[str], on_entry: Callable[[Mapping[str, Any]], None], max_entries: int,
             timeout: float) -> None:
        """Run journalctl, feed it at most ``max_entries`` entries until ``timeout`` seconds have passed."""
        deadline = time.monotonic() + timeout
        with tempfile.TemporaryFile() as errors:
            try:
                proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errors, stdin=subprocess.DEVNULL,
                                        close_fds=True)
            except OSError as exc:
                raise CollectorError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
            assert proc.stdout is not None
            taken = 0
            complete = True
            try:
                for raw in proc.stdout:
                    try:
                        entry = json.loads(raw)
                    except ValueError:
                        continue
                    if isinstance(entry, dict):
                        on_entry(entry)
                        taken += 1
                    if taken >= max_entries or time.monotonic() >= deadline:
                        complete = False
                        break
            finally:
                if not complete:
                    proc.kill()
                proc.stdout.close()
                code = proc.wait()
            if complete and code != 0:
                errors.seek(0)
                text = errors.read(2000).decode("utf-8", "replace").strip()
                if "cursor" in text.lower() and any(a.startswith("--after-cursor=") for a in argv):
                    raise CursorLost(text)
                raise CollectorError(f"{argv[0]} exited with status {code}: {text or 'no message'}")


# -- the collector ------------------------------------------------------------------------------------------


class LoginsCollector:
    def __init__(self, name: str, *, source: str, reader: Any, keeper: StateKeeper, names: Mapping[str, str],
                 timeout: float, max_list_items: int, logger: logging.Logger) -> None:
        self.name = name
        self._logger = logger
        self._source = source
        self._reader = reader
        self._keeper = keeper
        self._names = dict(names)
        self._timeout = timeout
        self._max_items = max_list_items
        self._tally = Tally()
        self._pos: Optional[Dict[str, Any]] = None
        saved = keeper.load()
        if saved is not None and saved.get("source") == source and isinstance(saved.get("position"), dict):
            self._pos = dict(saved["position"])
            self._tally.restore_pending(saved.get("pending") or [])

    def collect(self) -> List[Sample]:
        tally = self._tally
        tally.new_period()
        budget = max(self._timeout / 2, 0.1)
        if self._pos is None:  # first start: from now on
            pos = (self._reader.start(budget) if self._source == JOURNAL else self._reader.start())
        elif self._source == JOURNAL:
            try:
                pos = self._reader.read(self._pos, tally.add_journal_entry, budget)
            except CursorLost as exc:  # counted from now on, and said so
                self._logger.warning("The saved journal position is unusable (%s); counting from now", exc)
                pos = self._reader.start(budget)
        else:
            pos = self._reader.read(self._pos, tally.add_syslog_line)
        if pos != self._pos or self._pos is None:
            self._pos = pos
            self._keeper.save({"source": self._source, "position": pos, "pending": tally.pending_list()})
        values: Dict[str, Any] = {
            "auth_failures": tally.failures,
            "auth_failure_sources": list(tally.sources)[: self._max_items],
            "logins": tally.logins,
        }
        return [Sample(metric, values[builtin]) for builtin, metric in self._names.items()]


def _reads(options: Mapping[str, Any]) -> Tuple[str, ...]:
    source = resolve_source(options["source"])
    if source == JOURNAL:
        return (options["journal_directory"],) if options.get("journal_directory") else (JOURNAL,)
    return (options["path"],)


def _build(ctx: BuildContext, options: Mapping[str, Any]) -> LoginsCollector:
    source = resolve_source(options["source"])
    reader: Any
    if source == JOURNAL:
        reader = JournalReader(options.get("journal_directory"), options["max_lines"])
    else:
        reader = FileReader(options["path"], options["max_bytes"], options["max_lines"])
    keeper = StateKeeper(state_path(ctx.state_dir, "logins", ctx.name), STATE_VERSION, ctx.logger,
                         persist=ctx.persist_state)
    return LoginsCollector(ctx.name, source=source, reader=reader, keeper=keeper,
                           names=selected(options, METRICS), timeout=ctx.timeout,
                           max_list_items=ctx.max_list_items, logger=ctx.logger)


DOC = """\
Failed and successful logins since the previous sample: `auth_failures` (number), `auth_failure_sources`
(ip-address-list: the remote addresses of the failed attempts, IPv4 and IPv6, each once) and `logins`
(number). It reads the systemd journal (`source: journal`, through `journalctl`) or a syslog file
(`source: file`, `path: /var/log/auth.log` on systems with rsyslog, such as older Raspberry Pi OS
images; both of rsyslog's timestamp formats, traditional and RFC 3339). `source: auto` (the default) picks
the journal where systemd-journald runs.

**What counts.** A line counts by the program that wrote it and only when its message starts with that
program's own text, so a user name or a command line that quotes "Failed password" is never counted. In the
journal the program is checked against the sending process that journald recorded (`_EXE`: `sshd` in a
system directory such as /usr/sbin; else `_COMM`), so `logger -t sshd` or a user's own program named `sshd`
is not sshd. A syslog file has only the tag the sender chose: any local user can write a line tagged
`sshd` there with `logger`, one more reason to prefer the journal. One attempt is one failure:

| program | failure | login |
| --- | --- | --- |
| sshd | `Failed password\\|publickey\\|keyboard-interactive/pam ... for [invalid user] U from A port P`: one each; `Invalid user U from A port P`: one, unless a `Failed ... for invalid user` line of the same connection follows (then that line is the attempt) | `Accepted ... for U from A port P` |
| login | `FAILED LOGIN ...` | `pam_unix(login:session): session opened` |
| su | `FAILED SU (to root) ...` | |
| sudo | `U : N incorrect password attempts ; ...`: N; `U : user NOT in sudoers ; ...`: one | |

The other lines sshd writes for the same attempt (`pam_unix(sshd:auth): authentication failure`,
`error: PAM: Authentication failure for ...`, `PAM N more authentication failures`, `maximum
authentication attempts exceeded`) are not counted again; rsyslog's `message repeated N times: [ ... ]`
counts N times. sshd writes a failed public key attempt of an existing user only from the third one on at
its default `LogLevel INFO`.

**Exact across restarts.** The position reached (the journal cursor, or the file's inode and offset) is kept
in `state_dir/logins.<name>.json` after every round: a restart neither loses nor repeats an event, and a
first start counts from now, not the whole history. A rotated file (logrotate's `auth.log` -> `auth.log.1`)
is read to its end before the new one (a file missing between the move and its successor is a rotation in
progress, not an error); a truncated one from its start. A file that does not exist at all fails the round,
naming the path. A round reads at most `max_lines`
lines (and `max_bytes` of a file) and no longer than half the collector's `timeout`; the rest waits for the
next round.

**Access under the shipped unit.** The journal shows other users' and the system's messages only to root
and the groups `systemd-journal`, `adm` and `wheel` (systemd-journald.service(8), "Access Control"): the
unit gives the service `SupplementaryGroups=systemd-journal`. Debian's `/var/log/auth.log` is `root:adm`
mode 0640: for `source: file`, add the group with a drop-in (`systemctl edit defender-agent`):
`[Service]` / `SupplementaryGroups=systemd-journal adm`. `defender-agent check` says when the user it runs as
cannot read the source; [INSTALL.md](INSTALL.md#7-the-sandbox-and-what-exec-collectors-may-need) shows how to
run it as the service, with its groups.

`defender-agent once` reads the service's saved position and writes nothing: it shows the attempts since the
service's last round, and the service still counts them in its next report.

Behaviors to paste (a behavior states what is normal, so "alarm above 10" is `less-than-equals 10`; see
[BEHAVIORS.md](BEHAVIORS.md)), on the device (`behaviors:` in agent.yaml) or in a Detect security profile:

```yaml
behaviors:
  - name: PasswordGuessing        # more than 10 failed attempts in one report period alarms
    metric: auth_failures
    criteria: {comparisonOperator: less-than-equals, value: {number: 10}}
  - name: FailuresFromOutside     # a failed attempt from outside your networks alarms
    metric: auth_failure_sources
    criteria: {comparisonOperator: in-cidr-set, value: {cidrs: [10.0.0.0/8, 192.168.0.0/16]}}
  - name: NobodyLogsIn            # a gateway nobody logs into: any login alarms
    metric: logins
    criteria: {comparisonOperator: less-than-equals, value: {number: 0}}
```
"""

SAMPLE = """\
collectors:
  - type: logins
  - type: logins
    name: logins_file
    source: file
    path: /var/log/auth.log
    metrics:
      auth_failures: auth_failures_file
      auth_failure_sources: auth_failure_sources_file
      logins: logins_file
custom_metrics:
  auth_failures: number
  auth_failure_sources: ip-address-list
  logins: number
  auth_failures_file: number
  auth_failure_sources_file: ip-address-list
  logins_file: number
"""


SPEC = CollectorSpec(
    type="logins",
    doc=DOC,
    sample=SAMPLE,
    summary="Failed and successful logins (sshd, login, su, sudo) since the previous sample, from the journal "
    "or an auth.log: auth_failures (number), auth_failure_sources (ip-address-list), logins (number).",
    options={
        "source": Enum(doc="Where to read: `journal` (systemd-journald, through journalctl), `file` (a syslog "
                       "file such as /var/log/auth.log), `auto`: the journal where systemd-journald runs.",
                       default="auto", choices=("auto", "journal", "file")),
        "path": PathStr(doc="The syslog file read with `source: file`.", default=DEFAULT_PATH,
                        pattern=r"/.*", pattern_hint="must be an absolute path"),
        "journal_directory": PathStr(doc="Read the journal files of this directory (`journalctl --directory`) "
                                     "instead of the system journal.", default=None,
                                     pattern=r"/.*", pattern_hint="must be an absolute path"),
        "max_lines": Int(doc="Most lines (journal entries) read per round; the rest waits for the next round.",
                         default=DEFAULT_MAX_LINES, min=1, max=10_000_000),
        "max_bytes": Size(doc="Most bytes of the file read per round (`source: file`).",
                          default=DEFAULT_MAX_BYTES, min=4096),
        "metrics": metric_names_option(METRICS),
    },
    build=_build,
    emits=partial(emits_of, metrics=METRICS),
    describes=partial(describes_of, metrics=METRICS),
    reads=_reads,
    example={"source": "auto"},
    example_enabled=False,
)
