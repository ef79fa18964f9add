"""Cost per round of the ``logins`` collector with 1,000 new log lines per period, as a ratio to the standard
report cycle.

Baseline: one report cycle of the ``full`` profile (benchmarks/ours.py), measured in the same process,
interleaved round by round with the collector's ``collect()``. CPU seconds of this process *and of its
children* (the journal source runs ``journalctl`` once per round), so the journal figure includes journalctl.

- ``source: file``: an auth.log in rsyslog's traditional format; every round reads 1,000 new lines (30% failed
  attempts of sshd, the rest other sshd, sudo, cron and systemd lines), all of them parsed.
- ``source: journal`` (root only: a systemd-journald of its own in a private mount namespace, as the tests
  run it): every round reads 1,000 new entries of the login programs. They are written with ``logger -t
  sshd``, so the collector's sender check rejects them before the message is parsed: the figure is the
  journalctl process, its JSON and that check; the file figure shows the parsing.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from benchmarks.common import Figure, log, not_measured, time_per_call
from benchmarks.ours import Cycle, NotAvailable, failures_of, quiet_logger

GOAL = "a round with 1,000 new log lines at most 0.5x the standard report cycle"
GOAL_JOURNAL = ("context: journalctl itself formats about 20 us of JSON per entry (about 25 ms for 1,000 "
                "entries, measured by hand), more than the report cycle; at a 300 s report interval that is "
                "0.01% of one core")
LIMIT = 0.5
LINES_PER_ROUND = 1000

_NOISE = [
    "Dec  5 23:17:33 gw sshd[{i}]: Connection closed by authenticating user root 10.0.{a}.{b} port {p} [preauth]",
    "Dec  5 23:17:33 gw sshd[{i}]: Received disconnect from 10.0.{a}.{b} port {p}:11: Bye Bye [preauth]",
    "Dec  5 23:17:33 gw CRON[{i}]: pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)",
    "Dec  5 23:17:33 gw sudo:       pi : TTY=pts/0 ; PWD=/home/pi ; USER=root ; COMMAND=/usr/bin/apt update",
    "Dec  5 23:17:33 gw systemd-logind[{i}]: New session {i} of user pi.",
    "Dec  5 23:17:33 gw sshd[{i}]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh "
    "ruser= rhost=10.0.{a}.{b}  user=root",
    "Dec  5 23:17:33 gw sshd[{i}]: Invalid user admin{i} from 10.0.{a}.{b} port {p}",
]
_FAILED = "Dec  5 23:17:33 gw sshd[{i}]: Failed password for root from 10.0.{a}.{b} port {p} ssh2"

NAMESPACE = r"""
set -e
D=$1
mount -t tmpfs -o mode=755 tmpfs /run
mkdir -p /run/systemd/journal /run/log/journal
mount --bind $D/journal /run/log/journal
/lib/systemd/systemd-journald > /dev/null 2>&1 &
echo $! > $D/journald.pid
for i in $(seq 200); do [ -S /run/systemd/journal/socket ] && break; sleep 0.05; done
python3 - "$2" <<'EOF'
import socket, sys
n = int(sys.argv[1])
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.connect("/run/systemd/journal/socket")
for i in range(n):
    msg = f"Failed password for root from 10.0.{(i >> 8) & 255}.{i & 255} port {40000 + i % 20000} ssh2"
    s.send(f"SYSLOG_IDENTIFIER=sshd\nMESSAGE={msg}\nPRIORITY=6\n".encode())
EOF
sleep 1
kill $(cat $D/journald.pid)
wait
"""


def auth_lines(start: int, count: int) -> str:
    out = []
    for i in range(start, start + count):
        template = _FAILED if i % 10 < 3 else _NOISE[i % len(_NOISE)]
        out.append(template.format(i=i % 100000, a=(i >> 8) & 255, b=i & 255, p=40000 + i % 20000))
    return "\n".join(out) + "\n"


def cpu_with_children() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def measure(fn: Callable[[], Any], number: int) -> float:
    start = cpu_with_children()
    for _ in range(number):
        fn()
    return (cpu_with_children() - start) / number


def _ctx(state: Path, logger: logging.Logger) -> Any:
    from agent.collectors.contract import BuildContext

    return BuildContext(name="bench", state_dir=state, timeout=10, report_interval=300, max_list_items=5000,
                        logger=logger)


def _build(work: Path, logger: logging.Logger, **given: Any) -> Any:
    from agent.collectors.security import logins
    from agent.schema import Checker, Section

    checker = Checker("<bench>")
    options = Section(fields=dict(logins.SPEC.options)).check_fields(
        {**given, "max_lines": LINES_PER_ROUND}, "", checker, extra_known=())
    return logins.SPEC.build(_ctx(work / f"state-{given['source']}", logger), options)


def file_source(work: Path, logger: logging.Logger, rounds: int) -> Callable[[], Any]:
    log_file = work / "auth.log"
    log_file.write_text("")
    collector = _build(work, logger, source="file", path=str(log_file))
    collector.collect()  # first start: from the end
    with open(log_file, "a", encoding="utf-8") as f:
        f.write(auth_lines(0, rounds * LINES_PER_ROUND))
    collect: Callable[[], Any] = collector.collect
    return collect


def journal_source(work: Path, logger: logging.Logger, rounds: int) -> Tuple[Optional[Callable[[], Any]], str]:
    if os.geteuid() != 0 or shutil.which("unshare") is None or not os.path.exists("/lib/systemd/systemd-journald"):
        return None, "needs root, unshare and systemd-journald (a journal of its own in a mount namespace)"
    journal = work / "journal"
    journal.mkdir()
    collector = _build(work, logger, source="journal", journal_directory=str(journal))
    collector.collect()  # first start: the journal is empty, every entry written next is new
    script = work / "ns.sh"
    script.write_text(NAMESPACE)
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", str(script), str(work),
                           str(rounds * LINES_PER_ROUND)], capture_output=True, text=True, timeout=300, check=False)
    if done.returncode not in (0, -signal.SIGTERM):
        return None, f"the private journald failed: {done.stderr.strip()[:300]}"
    return collector.collect, ""


def run(quick: bool = False) -> Dict[str, Any]:
    number, repeats = (3, 3) if quick else (10, 9)
    rounds = (number * repeats) + 4
    work = Path(tempfile.mkdtemp(prefix="defender-bench-logins-"))
    logger = quiet_logger()
    figures: List[Figure] = []
    table = []
    try:
        try:
            cycle = Cycle("json", "long", profile="full")
        except NotAvailable as exc:
            return {"figures": [not_measured("logins per round", GOAL, str(exc))]}
        try:
            cycle.run()
            if failures_of(cycle):
                raise RuntimeError(f"collectors failed in the standard cycle: {failures_of(cycle)}")
            sources: Dict[str, Callable[[], Any]] = {"file": file_source(work, logger, rounds)}
            journal, why = journal_source(work, logger, rounds)
            if journal is not None:
                sources["journal"] = journal
            else:
                figures.append(not_measured("logins, source: journal, 1,000 entries per round", GOAL, why, "s"))
            for name, fn in sources.items():
                fn()  # warm-up
                fn()
                base: List[float] = []
                got: List[float] = []
                walls: List[float] = []
                for _ in range(repeats):
                    base.append(time_per_call(cycle.run, number))
                    wall = time.monotonic()
                    got.append(measure(fn, number))
                    walls.append((time.monotonic() - wall) / number)
                counted = fn()  # still 1,000 lines a round: the figure is not of empty rounds
                per_round = {s.name: s.value for s in counted}.get("auth_failures")
                base.sort()
                got.sort()
                walls.sort()
                figure = Figure(
                    name=f"logins, source: {name}, 1,000 lines per round: one round vs the standard report cycle",
                    unit="s", value=got[len(got) // 2], baseline=base[len(base) // 2],
                    baseline_name="one report cycle of the full profile (json long)",
                    goal=GOAL if name == "file" else GOAL_JOURNAL, limit=LIMIT if name == "file" else None,
                    extra={"min": got[0], "baseline_min": base[0], "wall_median": walls[len(walls) // 2],
                           "calls_per_round": number, "rounds": repeats, "cpu": "this process and its children",
                           "failures_counted_in_the_last_round": per_round,
                           "includes_outbox_write": cycle.includes_outbox},
                ).judge()
                figures.append(figure)
                table.append({"name": name, "median": figure.value, "baseline": figure.baseline})
                log(f"  logins {name}: {got[len(got) // 2] * 1e3:.3f} ms vs cycle {base[len(base) // 2] * 1e3:.3f} ms "
                    f"({figure.ratio or 0:.2f}x), wall {walls[len(walls) // 2] * 1e3:.1f} ms")
        finally:
            cycle.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"figures": figures, "extra": {"table": table}}
