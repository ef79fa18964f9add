"""The running agent (`defender-agent run` against the local broker and responder).

Memory after 100 reports vs a bare awscrt MQTT5 client with psutil imported, connected over
the same mutual TLS to the same broker (the floor of this job), with a breakdown of the rest;
RSS growth at the normal cadence; idle wake-ups of the loop's thread over 60 s; fsyncs and
bytes written per report; the start on a 10,000-report outbox that an older version left.

Every agent is a real `python -m agent run` subprocess with the real collectors
(listening_ports, tcp_connections, network_stats, system), CBOR short names, over
mutual TLS to a private mosquitto on 127.0.0.1, answered by the responder in this
process. Each concurrent agent has its own thing name.

Structure (so that `make bench` stays well under 15 minutes):

1. concurrently: the memory run (`run` at interval 1 s, the config's minimum, in the shipped
   unit's Environment= (MALLOC_ARENA_MAX=1), for :data:`GROWTH_SECONDS`; RSS at 100 accepted
   reports is "steady RSS", and RSS every 25 reports after it gives the growth, extrapolated to
   10,000 reports), the measure runs (the same `run` to 100 reports, each with one memory measure
   changed in its own process only: without the unit's MALLOC_ARENA_MAX, with importlib.metadata
   imported at start as before, MALLOC_ARENA_MAX=2, a smaller SQLite cache, one awscrt event-loop
   thread, malloc_trim, PYTHONOPTIMIZE=2), the idle run (interval 300 s, a watchdog of
   20 s answered by a socket of ours, 60 s measured, then SIGTERM) and the two strace
   runs (5 and 25 reports at 1 s). The memory run sets the phase's length;
2. alone: the start on an empty state_dir (the baseline), then the start on an outbox
   holding 10,000 pending, never-published reports with ids far in the past, as an
   older version that kept every report for a drain could leave it. `backlog: newest`
   supersedes all but the newest in one transaction at start; measured: process start
   to the first accepted report, the RSS then, and the ledger afterwards. Three rounds,
   interleaved, medians (a round takes about 2 s).

The baselines (a bare connected client; the bare imports; the interpreter; run's imports
without connecting) are separate processes measured before and after phase 1.

`--quick` runs the memory run to 50 reports (RSS at 20, growth to 50), idles 10 s and
runs one start-up round (still on 10,000 reports).
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from benchmarks.common import WORK_DIR, Figure, log, not_measured

UNIT = Path(__file__).resolve().parents[1] / "systemd" / "defender-agent.service"

STEADY = "steady RSS after 100 reports vs a bare connected awscrt MQTT5 client with psutil"
GROWTH = "RSS growth over 10,000 reports at the normal cadence"
IDLE_WAKEUPS = "idle wake-ups of the loop's thread in 60 s vs watchdog pings + due events"
GROWTH_SECONDS = 300.0  # the memory run's length at interval 1 s: ~300 reports, extrapolated to 10,000
GROWTH_TARGET = 10_000
IDLE_WATCHDOG_USEC = 20_000_000  # WATCHDOG=1 every 10 s during the idle run
START = "start on a 10,000-report outbox left by an older version"
SEEDED = 10_000
SEED_AGE = 30 * 86400  # the seeded ids end 30 days back: far below the epoch-second ids the agent builds next

GOALS = {
    STEADY: "at most 1.3x",
    GROWTH: "under 2 MB",
    IDLE_WAKEUPS: "at most 1.0x (one wake-up per watchdog ping plus one per due event)",
    "idle CPU in 60 s between reports": "under 0.05 s; no busy polling",
    "fsyncs per report in the outbox": "at most 3",
    "bytes written per report in the outbox": "context",
    START: "context (time to the first accepted report)",
}

READY = "; import sys, time; sys.stdout.write('ready\\n'); sys.stdout.flush(); time.sleep(3600)"
INTERPRETER = "pass" + READY
# `import awscrt` alone loads no native code: awscrt.io and awscrt.mqtt5 load _awscrt (aws-lc, s2n, the CRT).
BARE = "import awscrt.io, awscrt.mqtt5, psutil" + READY
METADATA = "import awscrt.io, awscrt.mqtt5, psutil, importlib.metadata" + READY
# run's imports without connecting or sampling: the command, its loop, the collectors, the MQTT5 client module.
IMPORTS = ("import agent.cli, agent.commands.run, agent.scheduler, agent.sampling, agent.collectors.build, "
           "awscrt.mqtt5, psutil" + READY)
# The floor: a bare awscrt MQTT5 client, psutil imported, connected with mutual TLS (awscrt's defaults otherwise).
BARE_CLIENT = """\
import sys, threading, time
import psutil
from awscrt import io, mqtt5
cert, key, ca, port, client_id = sys.argv[1:6]
options = io.TlsContextOptions.create_client_with_mtls_from_path(cert, key)
options.override_default_trust_store_from_path(None, ca)
connected = threading.Event()
client = mqtt5.Client(mqtt5.ClientOptions(
    host_name="127.0.0.1", port=int(port), bootstrap=io.ClientBootstrap.get_or_create_static_default(),
    tls_ctx=io.ClientTlsContext(options),
    connect_options=mqtt5.ConnectPacket(client_id=client_id, keep_alive_interval_sec=60),
    on_lifecycle_event_connection_success_fn=lambda data: connected.set()))
client.start()
if not connected.wait(30):
    sys.exit("the bare client did not connect within 30 s")
sys.stdout.write("ready\\n")
sys.stdout.flush()
time.sleep(3600)
"""

# One memory measure each, applied to one `run` process only (an environment variable, or a sitecustomize.py
# on its PYTHONPATH); compared with the plain memory run at the same report count, at the same time.
SITE_ELG1 = """\
# One awscrt event-loop thread for the static default bootstrap (the agent's), not one per two CPUs.
from awscrt import io as _io
_made = []
def _one_thread():
    if not _made:
        group = _io.EventLoopGroup(1)
        _made.append(_io.ClientBootstrap(group, _io.DefaultHostResolver(group)))
    return _made[0]
_io.ClientBootstrap.get_or_create_static_default = staticmethod(_one_thread)
"""
SITE_CACHE = """\
# A 256 KiB SQLite page cache for the outbox (default: 2 MiB, cache_size=-2000).
import agent.outbox.db as _db
import agent.outbox.store as _outbox
_connect = _db.connect
def _small_cache(path):
    conn = _connect(path)
    conn.execute("PRAGMA cache_size=-256")
    return conn
_db.connect = _outbox.connect = _small_cache
"""
SITE_TRIM = """\
# glibc's malloc_trim(0) after every report round: freed heap pages (the YAML parse, the start) go back to the OS.
import ctypes
import agent.scheduler as _scheduler
_trim = ctypes.CDLL("libc.so.6").malloc_trim
_round = _scheduler.Service._report_round
def _round_then_trim(self, now):
    _round(self, now)
    _trim(0)
_scheduler.Service._report_round = _round_then_trim
"""
SITE_EAGER_METADATA = """\
# importlib.metadata imported at start, as agent.collectors.registry did before it imported it only when used.
import importlib.metadata
"""
MEASURES: Dict[str, Tuple[Dict[str, str], Optional[str], str]] = {
    # name: (environment, sitecustomize.py or None, what it is)
    # Taken (the unit's MALLOC_ARENA_MAX=1, importlib.metadata only when used): measured by leaving them out.
    "arenas": ({"MALLOC_ARENA_MAX": ""}, None, "without the unit's MALLOC_ARENA_MAX=1 (glibc's default arenas)"),
    "eagermeta": ({}, SITE_EAGER_METADATA, "with importlib.metadata imported at start (as before)"),
    "arena2": ({"MALLOC_ARENA_MAX": "2"}, None, "MALLOC_ARENA_MAX=2 instead of 1"),
    "cache": ({}, SITE_CACHE, "SQLite PRAGMA cache_size=-256 (256 KiB) on the outbox connection"),
    "elg1": ({}, SITE_ELG1, "awscrt EventLoopGroup(1) for the MQTT client's bootstrap"),
    "trim": ({}, SITE_TRIM, "malloc_trim(0) after every report round (ctypes)"),
    "optimize2": ({"PYTHONOPTIMIZE": "2"}, None, "PYTHONOPTIMIZE=2 (no docstrings, no asserts)"),
}


def _threads_ctx_switches(pid: int) -> int:
    """Voluntary + involuntary context switches of every thread of ``pid`` (a wake-up count)."""
    total = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        try:
            for line in status.read_text(encoding="ascii").splitlines():
                if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


class MemoryRun:
    """Background: `run` at interval 1 s; RSS when ``steady_at`` reports are accepted, then every 25 until
    ``seconds`` after the start (or ``end_at`` reports, when given), then stop.

    No `--reports N`: a round that runs late is followed by one at once, which supersedes the report
    before it (seen once in 300), so N built reports can be N - 1 accepted and the process would exit
    before the last RSS is read. :meth:`wait` stops the agent at the end.
    """

    def __init__(self, rig: Any, work: Path, steady_at: int, seconds: float, name: str = "mem",
                 env: Optional[Dict[str, str]] = None, end_at: Optional[int] = None) -> None:
        from devkit.rig import proc_rss_kib

        self.rig, self.work, self.name = rig, work, name
        self.steady_at, self.seconds_wanted, self.end_at = steady_at, seconds, end_at
        self.state = work / f"{name}-state"
        self.log = work / f"{name}.log"
        cfg = rig.write_config(work / f"{name}.yaml", self.state, interval=1, thing=f"{name}-gw")
        self.proc = rig.start_agent(cfg, self.log, env=env)
        self.rss_kib = proc_rss_kib
        self.samples: List[Tuple[int, int, float]] = []  # (accepted, rss KiB, seconds since start)
        self.steady: Optional[int] = None
        self.end: Optional[int] = None
        self.steady_reports: Optional[int] = None  # accepted reports when the steady RSS was taken
        self.end_reports: Optional[int] = None
        self.threads: Optional[int] = None  # at the steady point
        self.started = time.monotonic()
        self.seconds: Optional[float] = None  # start to the last sample
        self._stop = threading.Event()
        # Poll in a thread of our own: the milestones must be caught while the driver measures other figures.
        self._thread = threading.Thread(target=self._poll_loop, name=f"{name}-poll", daemon=True)
        self._thread.start()

    def _poll_loop(self) -> None:
        deadline = self.started + self.seconds_wanted + 600
        while not self._stop.is_set() and time.monotonic() < deadline and self.end is None:
            self.poll()
            self._stop.wait(0.1)

    def poll(self) -> None:
        """Record RSS at the milestones (and every 25 accepted reports after the steady one)."""
        from devkit.rig import accepted_count

        if self.proc.poll() is not None or self.end is not None:
            return
        done = accepted_count(self.state)
        try:
            rss = self.rss_kib(self.proc.pid)
            threads = len(os.listdir(f"/proc/{self.proc.pid}/task"))
        except OSError:
            return
        elapsed = time.monotonic() - self.started
        if self.steady is None and done >= self.steady_at:
            self.steady, self.steady_reports, self.threads = rss, done, threads
            self.samples.append((done, rss, round(elapsed, 1)))
            log(f"  memory {self.name}: steady RSS {rss} KiB after {done} reports ({threads} threads)")
        elif self.steady is not None and done - self.samples[-1][0] >= max(5, self.steady_at // 4):
            self.samples.append((done, rss, round(elapsed, 1)))
        over = (done >= self.end_at) if self.end_at is not None else (elapsed >= self.seconds_wanted)
        if self.steady is not None and over:
            self.end, self.end_reports = rss, done
            if self.samples[-1][0] != done:
                self.samples.append((done, rss, round(elapsed, 1)))
            self.seconds = round(elapsed, 1)
            log(f"  memory {self.name}: RSS {rss} KiB after {done} reports ({self.seconds} s)")

    def wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.end is None and self.proc.poll() is None:
            time.sleep(0.2)
        self._stop.set()
        self._thread.join(5)
        self.rig.stop_agent(self.proc)

    def slope_kib_per_report(self) -> Optional[float]:
        """Least-squares RSS growth per accepted report over the samples from the steady one on."""
        points = [(float(n), float(r)) for n, r, _ in self.samples]
        if len(points) < 3 or points[-1][0] - points[0][0] < 50:
            return None
        mx = statistics.fmean(x for x, _ in points)
        my = statistics.fmean(y for _, y in points)
        den = sum((x - mx) ** 2 for x, _ in points)
        return sum((x - mx) * (y - my) for x, y in points) / den if den else None


def _bare_rss(rig: Any, code: str = BARE) -> int:
    from devkit.rig import proc_rss_kib

    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        time.sleep(1.0)
        return proc_rss_kib(proc.pid)
    finally:
        proc.kill()
        proc.wait(5)


def _bare_client_rss(rig: Any, name: str) -> Tuple[int, int]:
    """(RSS KiB, threads) of the bare connected client (:data:`BARE_CLIENT`), 3 s after it connected."""
    from devkit.rig import proc_rss_kib

    pair = rig.pki.client(name)
    proc = subprocess.Popen([sys.executable, "-c", BARE_CLIENT, str(pair.cert), str(pair.key), str(rig.pki.ca),
                             str(rig.broker.port), name], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the bare client did not connect (exit status {proc.poll()})")
        time.sleep(3.0)
        return proc_rss_kib(proc.pid), len(os.listdir(f"/proc/{proc.pid}/task"))
    finally:
        proc.kill()
        proc.wait(5)


def unit_environment(unit: Path = UNIT) -> Dict[str, str]:
    """The Environment= of the shipped unit but the config path: `run` as systemd starts it on a gateway."""
    out: Dict[str, str] = {}
    for line in unit.read_text(encoding="utf-8").splitlines():
        if line.startswith("Environment="):
            for item in shlex.split(line[len("Environment="):]):
                key, _, value = item.partition("=")
                out[key] = value
    out.pop("DEFENDER_AGENT_CONFIG", None)
    return out


def _measure_env(work: Path, name: str) -> Dict[str, str]:
    """The environment of one measure run (the unit's, changed by the measure; an empty value unsets a
    variable); a sitecustomize.py of its own on PYTHONPATH when it needs one."""
    env, site, _ = MEASURES[name]
    out = {k: v for k, v in {**unit_environment(), **env}.items() if v}
    if site is not None:
        folder = work / f"site-{name}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "sitecustomize.py").write_text(site, encoding="utf-8")
        out["PYTHONPATH"] = str(folder)
    return out


def _main_thread_switches(pid: int) -> Tuple[int, int]:
    """(voluntary, involuntary) context switches of the process's main thread (the loop's)."""
    counts = {"voluntary_ctxt_switches": 0, "nonvoluntary_ctxt_switches": 0}
    with open(f"/proc/{pid}/task/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            key = line.split(":", 1)[0]
            if key in counts:
                counts[key] = int(line.split()[1])
    return counts["voluntary_ctxt_switches"], counts["nonvoluntary_ctxt_switches"]


_DUE = re.compile(r"Built report \d+|Published report \d+ again|unanswered after")


class NotifySocket:
    """A datagram socket standing in for systemd's: counts the agent's WATCHDOG=1 messages, with their time."""

    def __init__(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.pings: List[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="notify", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            if b"WATCHDOG=1" in data:
                self.pings.append(time.monotonic())

    def between(self, t0: float, t1: float) -> int:
        return sum(1 for t in self.pings if t0 <= t < t1)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
        self.path.unlink(missing_ok=True)


def measure_idle(rig: Any, work: Path, seconds: float) -> Dict[str, Any]:
    """`run` at interval 300 s with a 20 s watchdog: wake-ups of its loop's thread while nothing is due.

    After the first report is accepted and 5 s to settle: the main thread's voluntary context
    switches (each time it slept and was woken) over ``seconds``, against what is due then: the
    watchdog pings our socket received, plus every report built, resent or given up on in the window
    (from the log). Then SIGTERM, timed to the process's exit.
    """
    from devkit.rig import accepted_count, proc_cpu_seconds, wait_until

    state = work / "idle-state"
    cfg = rig.write_config(work / "idle.yaml", state, interval=300, reply_timeout=30, retry_max_delay=60,
                           thing="idle-gw")
    notify = NotifySocket(work / "notify.sock")
    prefix = ["env", f"NOTIFY_SOCKET={notify.path}", f"WATCHDOG_USEC={IDLE_WATCHDOG_USEC}"]  # the rig drops ours
    proc = rig.start_agent(cfg, work / "idle.log", prefix=prefix)
    log_path = work / "idle.log"
    stop_seconds = None
    try:
        if not wait_until(lambda: accepted_count(state) >= 1, 30, 0.2):
            raise RuntimeError("the idle agent's first report was not accepted within 30 s")
        time.sleep(5.0)  # settle: the first report's replies, status writes
        due0 = len(_DUE.findall(log_path.read_text(errors="replace")))
        cpu0, ctx0, main0, t0 = (proc_cpu_seconds(proc.pid), _threads_ctx_switches(proc.pid),
                                 _main_thread_switches(proc.pid), time.monotonic())
        time.sleep(seconds)
        cpu1, ctx1, main1, t1 = (proc_cpu_seconds(proc.pid), _threads_ctx_switches(proc.pid),
                                 _main_thread_switches(proc.pid), time.monotonic())
        text = log_path.read_text(errors="replace")
        due = len(_DUE.findall(text)) - due0
        built = len(re.findall(r"Built report", text))
        stop_seconds = rig.stop_agent(proc)
    finally:
        rig.stop_agent(proc)
        notify.close()
    stopped = "Received SIGTERM" in log_path.read_text(errors="replace")
    return {"cpu": cpu1 - cpu0, "seconds": t1 - t0, "wakeups": ctx1 - ctx0, "reports_built": built,
            "main_voluntary": main1[0] - main0[0], "main_involuntary": main1[1] - main0[1],
            "pings": notify.between(t0, t1), "due_events": due, "watchdog_usec": IDLE_WATCHDOG_USEC,
            "sigterm_to_exit_s": round(stop_seconds, 3) if stop_seconds is not None else None,
            "sigterm_logged": stopped, "exit_status": proc.returncode}


_CALL = re.compile(r"^\d+\s+(?:\d+\.\d+\s+)?(\w+)\((\d+)<([^>]*)>.*\)\s+=\s+(-?\d+)")


def _strace_run(rig: Any, work: Path, name: str, reports: int) -> Dict[str, Any]:
    state = work / f"{name}-state"
    cfg = rig.write_config(work / f"{name}.yaml", state, interval=1, thing=f"{name}-gw")
    trace = work / f"{name}.strace"
    prefix = ["strace", "-f", "-qq", "-y", "-s", "0", "-e", "trace=fsync,fdatasync,write,pwrite64,pwritev",
              "-o", str(trace)]
    proc = rig.start_agent(cfg, work / f"{name}.log", "--reports", str(reports), prefix=prefix)
    try:
        proc.wait(reports * 3 + 60)
    except subprocess.TimeoutExpired:
        rig.stop_agent(proc)
        raise RuntimeError(f"strace run of {reports} reports did not finish") from None
    fsyncs: Counter[str] = Counter()
    written: Counter[str] = Counter()
    for line in trace.read_text(errors="replace").splitlines():
        m = _CALL.match(line)
        if not m:
            continue
        call, _fd, path, result = m.groups()
        in_state = path.startswith(str(state))
        key = ("(state_dir itself)" if path == str(state) else re.sub(r"\.\d+\.tmp$", ".PID.tmp", Path(path).name)
               ) if in_state else "(outside state_dir)"
        if call in ("fsync", "fdatasync"):
            fsyncs[key] += 1
        elif in_state and int(result) > 0:
            written[key] += int(result)
    return {"fsyncs": fsyncs, "written": written}


def measure_fsyncs(rig: Any, work: Path, small: int, large: int) -> Dict[str, Any]:
    """fsyncs and bytes written per report: (run of ``large`` - run of ``small``) / (large - small)."""
    if shutil.which("strace") is None:
        raise RuntimeError("strace is not installed (apt-get install -y strace)")
    a = _strace_run(rig, work, "strace-small", small)
    b = _strace_run(rig, work, "strace-large", large)
    n = large - small
    per_file_fsync = {k: (b["fsyncs"][k] - a["fsyncs"][k]) / n for k in set(a["fsyncs"]) | set(b["fsyncs"])}
    per_file_bytes = {k: (b["written"][k] - a["written"][k]) / n for k in set(a["written"]) | set(b["written"])}
    state_keys = [k for k in per_file_fsync if k != "(outside state_dir)"]
    return {
        "fsyncs_per_report": sum(per_file_fsync[k] for k in state_keys),
        "fsyncs_per_report_outbox": sum(v for k, v in per_file_fsync.items() if k.startswith("outbox.sqlite3")),
        "fsyncs_per_report_all": sum(per_file_fsync.values()),
        "bytes_per_report": sum(per_file_bytes.values()),
        "fsyncs_by_file": {k: round(v, 2) for k, v in sorted(per_file_fsync.items())},
        "bytes_by_file": {k: round(v, 1) for k, v in sorted(per_file_bytes.items())},
        "runs": [small, large],
    }


def _seed_outbox(cfg_path: Path, state: Path, count: int) -> Dict[str, Any]:
    """Fill ``state``'s outbox with ``count`` pending, never-published reports, as an older version left them.

    Real collectors, CBOR short names, the payload's report id rewritten for each; ids end ``SEED_AGE``
    before now (below anything the agent builds next), each created at its id's second. One transaction.
    """
    from agent.config.load import parse_config
    from agent.outbox.fold import rewrite
    from agent.outbox.store import Outbox, Pending
    from agent.report.builder import ReportBuilder
    from agent.report.model import Sample
    from agent.sampling import build_source, network_stats

    config = parse_config(cfg_path.read_text(), str(cfg_path))
    quiet = logging.getLogger("bench.seed")
    quiet.setLevel(logging.ERROR)
    source = build_source(config, quiet)
    samples: List[Sample] = list(source.sample())
    source.close()
    network = network_stats(samples)
    first = int(time.time()) - SEED_AGE - count
    template = ReportBuilder(config, quiet).build(first, samples)
    fmt = template.format
    box = Outbox.open(state, quiet)
    try:
        with box.transaction():
            for i in range(count):
                rid = first + i
                payload = template.payload if i == 0 else rewrite(template.payload, rid, None)
                box.add(Pending.new(rid, fmt, payload, float(rid), network))
        outbox_bytes = box.pending_bytes()
    finally:
        box.close()
    return {"first_id": first, "last_id": first + count - 1, "count": count, "payload_bytes": len(template.payload),
            "outbox_payload_bytes": outbox_bytes}


def _first_accepted_at(state: Path) -> Optional[float]:
    """The wall time (ledger ``finished_at``) of the first accepted report; None while there is none."""
    import sqlite3

    db = state / "outbox.sqlite3"
    if not db.exists():
        return None
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return None
    try:
        row = conn.execute("SELECT MIN(finished_at) FROM ledger WHERE outcome = 'accepted'").fetchone()
    except sqlite3.Error:  # created a moment ago, no schema yet
        return None
    finally:
        conn.close()
    return None if row is None or row[0] is None else float(row[0])


def _ledger_rows(state: Path) -> List[Tuple[int, str, str, float]]:
    """(report id, outcome, message, finished_at) of every ledger entry, read-only."""
    import sqlite3

    conn = sqlite3.connect(f"file:{state / 'outbox.sqlite3'}?mode=ro", uri=True, timeout=5)
    try:
        return [(int(r), str(o), str(m or ""), float(f)) for r, o, m, f in conn.execute(
            "SELECT report_id, outcome, message, finished_at FROM ledger ORDER BY report_id")]
    finally:
        conn.close()


def _vm_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _check_start_ledger(rows: List[Tuple[int, str, str, float]],
                        seed: Dict[str, Any]) -> Tuple[List[str], Dict[str, Any]]:
    """What the ledger says after the start on the seeded outbox; problems ([] when it is as expected).

    Expected: the seeded ids but the newest end ``superseded`` by the newest seeded id, all at one
    ``finished_at`` (one transaction at start); the newest seeded id ends ``accepted``, or
    ``superseded`` by the first fresh report (built in the first round, before the connection is up:
    a report that never reached the broker); every fresh report (id above the seeded ones) ``accepted``.
    """
    first, last = int(seed["first_id"]), int(seed["last_id"])
    by_id = {rid: (outcome, message, at) for rid, outcome, message, at in rows}
    older = [by_id.get(rid) for rid in range(first, last)]
    problems: List[str] = []
    not_superseded = [first + i for i, e in enumerate(older) if e is None or e[0] != "superseded"]
    if not_superseded:
        outcomes = Counter(str(by_id[r][0]) if r in by_id else "missing" for r in not_superseded)
        problems.append(f"{len(not_superseded):,} of the {last - first:,} older seeded ids are not superseded "
                        f"(first: {not_superseded[:3]}; outcomes {dict(outcomes)})")
    wrong_winner = [first + i for i, e in enumerate(older)
                    if e is not None and e[0] == "superseded" and not e[1].startswith(f"superseded by report {last} ")]
    if wrong_winner:
        problems.append(f"{len(wrong_winner):,} older seeded ids were superseded by another report than the newest "
                        f"seeded {last}: e.g. {by_id[wrong_winner[0]][1]!r}")
    times = {e[2] for e in older if e is not None and e[0] == "superseded"}
    if len(times) > 1:
        problems.append(f"the older seeded ids were superseded at {len(times)} different times, not in one transaction")
    newest = by_id.get(last)
    fresh = {rid: e for rid, e in by_id.items() if rid > last}
    if newest is None:
        problems.append(f"the newest seeded id {last} is not in the ledger")
    elif newest[0] == "superseded" and not any(newest[1].startswith(f"superseded by report {rid} ") for rid in fresh):
        problems.append(f"the newest seeded id {last} was superseded by no fresh report: {newest[1]!r}")
    elif newest[0] not in ("accepted", "superseded"):
        problems.append(f"the newest seeded id {last} ended {newest[0]}: {newest[1]!r}")
    not_accepted = {rid: e[0] for rid, e in fresh.items() if e[0] != "accepted"}
    if not_accepted:
        problems.append(f"fresh reports not accepted: {not_accepted}")
    if not any(e[0] == "accepted" for e in by_id.values()):
        problems.append("no report was accepted")
    below = [rid for rid in by_id if rid < first]
    if below:
        problems.append(f"{len(below)} ledger ids below the seeded range")
    summary = {
        "outcomes": dict(Counter(outcome for _, outcome, _, _ in rows)),
        "older_seeded_superseded": sum(1 for e in older if e is not None and e[0] == "superseded"),
        "newest_seeded": list(newest[:2]) if newest else None,
        "fresh": {str(rid): e[0] for rid, e in sorted(fresh.items())},
    }
    return problems, summary


def measure_start(rig: Any, work: Path, name: str, seeded: int) -> Dict[str, Any]:
    """Start `run` (interval 300 s) on a fresh state_dir, or one with ``seeded`` reports left in the outbox.

    Time from just before the process starts to the first accepted report (its ledger ``finished_at``),
    the RSS and peak RSS (VmHWM) when that report was seen accepted (polled every 50 ms); then wait until
    nothing is pending (at most 30 s), read the RSS again, stop the agent and read the ledger.
    """
    from devkit.rig import pending_ids, wait_until

    state = work / f"{name}-state"
    cfg = rig.write_config(work / f"{name}.yaml", state, interval=300, thing=f"{name}-gw")
    t_seed = time.monotonic()
    seed = _seed_outbox(cfg, state, seeded) if seeded else None
    seed_seconds = time.monotonic() - t_seed
    log_path = work / f"{name}.log"
    wall0, t0 = time.time(), time.monotonic()
    proc = rig.start_agent(cfg, log_path)
    accepted_at: Optional[float] = None
    seen = rss = hwm = rss_after = None
    try:
        while time.monotonic() - t0 < 120 and proc.poll() is None:
            accepted_at = _first_accepted_at(state)
            if accepted_at is not None:
                seen = time.monotonic() - t0
                rss, hwm = _vm_kib(proc.pid, "VmRSS"), _vm_kib(proc.pid, "VmHWM")
                break
            time.sleep(0.05)
        settled = bool(wait_until(lambda: not pending_ids(state), 30, 0.2)) if accepted_at is not None else False
        if proc.poll() is None:
            rss_after = _vm_kib(proc.pid, "VmRSS")
    finally:
        rig.stop_agent(proc)
    if accepted_at is None:
        raise RuntimeError(f"{name}: no report accepted within 120 s (exit status {proc.returncode}): "
                           f"{log_path.read_text(errors='replace')[-1500:]}")
    text = log_path.read_text(errors="replace")
    connected = re.search(r"over mutual TLS in ([\d.]+) s", text)
    out: Dict[str, Any] = {
        "seconds": round(accepted_at - wall0, 3),
        "seen_seconds": round(seen or 0.0, 3),
        "rss_kib": rss, "hwm_kib": hwm, "rss_settled_kib": rss_after,
        "settled": settled, "pending_after": len(pending_ids(state)),
        "tracebacks": text.count("Traceback"),
        "connect_seconds": float(connected.group(1)) if connected else None,
    }
    if seed is not None:
        problems, summary = _check_start_ledger(_ledger_rows(state), seed)
        if out["pending_after"]:
            problems.append(f"{out['pending_after']} report(s) still pending 30 s after the first was accepted")
        if out["tracebacks"]:
            problems.append(f"{out['tracebacks']} traceback(s) in the agent's log")
        line = re.search(r"Pending report \d+ supersedes .*", text)
        out.update(seed=seed, seed_seconds=round(seed_seconds, 2), ledger=summary, problems=problems,
                   start_line=line.group(0)[:300] if line else None)
    return out


def measure_starts(rig: Any, work: Path, rounds: int) -> Dict[str, List[Dict[str, Any]]]:
    """``rounds`` pairs, interleaved: a start on an empty state_dir, then one on the seeded outbox.

    Every start has its own thing name: fresh ids are epoch seconds, and two runs of one thing within a
    second would send one id with two payloads.
    """
    runs: Dict[str, List[Dict[str, Any]]] = {"empty": [], "outbox": []}
    for i in range(rounds):
        runs["empty"].append(measure_start(rig, work, f"start-empty-{i}", 0))
        runs["outbox"].append(measure_start(rig, work, f"start-outbox-{i}", SEEDED))
        log(f"  start round {i}: empty {runs['empty'][-1]['seconds']} s, outbox {runs['outbox'][-1]['seconds']} s")
    return runs


def _guarded(extra: Dict[str, Any], name: str, fn: Any) -> None:
    log(f"  agent: {name}")
    try:
        extra[name] = fn()
    except Exception as exc:  # record, keep going: the other figures are still worth having
        extra[name] = {"error": f"{type(exc).__name__}: {exc}"}
    log(f"  agent: {name}: {extra[name]}")


def _mb(kib: float) -> float:
    return kib / 1024.0


def run(quick: bool = False) -> Dict[str, Any]:
    from devkit.broker import find_mosquitto
    from devkit.rig import Rig, ledger

    if find_mosquitto() is None:
        return {"figures": [not_measured(n, g, "mosquitto is not installed") for n, g in GOALS.items()]}
    work = WORK_DIR / "agent"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    steady_at = 20 if quick else 100
    growth_seconds = 40.0 if quick else GROWTH_SECONDS
    idle_seconds = 10.0 if quick else 60.0
    start_rounds = 1 if quick else 3
    measures = ["arenas"] if quick else list(MEASURES)
    figures: List[Figure] = []
    extra: Dict[str, Any] = {}
    phases: Dict[str, float] = {}
    with Rig(work) as rig:
        things = ["mem-gw", "idle-gw", "strace-small-gw", "strace-large-gw", "bare-0", "bare-1",
                  *(f"{m}-gw" for m in measures),
                  *(f"start-{kind}-{i}-gw" for i in range(start_rounds) for kind in ("empty", "outbox"))]
        for thing in things:
            rig.pki.client(thing)  # issue every certificate here: openssl's CA serial file is not thread-safe
        before = {"client": _bare_client_rss(rig, "bare-0"), "bare": _bare_rss(rig), "imports": _bare_rss(rig, IMPORTS),
                  "interpreter": _bare_rss(rig, INTERPRETER), "metadata": _bare_rss(rig, METADATA)}
        # Phase 1: memory, measures, idle and strace runs at once (separate agents, thing names, state dirs).
        t0 = time.monotonic()
        mem = MemoryRun(rig, work, steady_at, growth_seconds, env=unit_environment())
        variants = {m: MemoryRun(rig, work, steady_at, 0.0, name=m, env=_measure_env(work, m), end_at=steady_at)
                    for m in measures}
        workers = [threading.Thread(target=_guarded, args=(extra, "idle", lambda: measure_idle(rig, work, idle_seconds)),
                                    name="idle"),
                   threading.Thread(target=_guarded, args=(extra, "fsync", lambda: measure_fsyncs(rig, work, 5, 25)),
                                    name="fsync")]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        for variant in variants.values():
            variant.wait(max(0.0, steady_at * 3.0 + 120 - (time.monotonic() - t0)))
        log("  agent: waiting for the memory run")
        mem.wait(max(0.0, growth_seconds * 2 + 120 - (time.monotonic() - t0)))
        phases["concurrent: memory (steady RSS, growth), measures, idle, fsync"] = round(time.monotonic() - t0, 1)
        after = {"client": _bare_client_rss(rig, "bare-1"), "bare": _bare_rss(rig), "imports": _bare_rss(rig, IMPORTS),
                 "interpreter": _bare_rss(rig, INTERPRETER), "metadata": _bare_rss(rig, METADATA)}
        # Phase 2, alone: start on an empty state_dir (baseline), then on the outbox an older version left.
        t0 = time.monotonic()
        _guarded(extra, "start", lambda: measure_starts(rig, work, start_rounds))
        phases[f"start: empty state_dir and the 10,000-report outbox, {start_rounds} round(s)"] = round(
            time.monotonic() - t0, 1)

    def mean(key: str) -> float:
        values = [before[key], after[key]]
        return float(statistics.fmean(v[0] if isinstance(v, tuple) else v for v in values))

    client_kib, bare_kib, imports_kib = mean("client"), mean("bare"), mean("imports")
    interpreter_kib, metadata_kib = mean("interpreter"), mean("metadata")
    slope = mem.slope_kib_per_report()
    extra["phases_seconds"] = phases
    extra["memory"] = {"bare_client_kib_threads": [before["client"], after["client"]],
                       "bare_rss_kib": [before["bare"], after["bare"]],
                       "imports_rss_kib": [before["imports"], after["imports"]],
                       "interpreter_rss_kib": [before["interpreter"], after["interpreter"]],
                       "metadata_rss_kib": [before["metadata"], after["metadata"]],
                       "steady_kib": mem.steady, "end_kib": mem.end, "threads": mem.threads,
                       "seconds_to_end": mem.seconds, "outcomes": dict(Counter(ledger(mem.state).values())),
                       "samples": mem.samples, "reports": [mem.steady_reports, mem.end_reports],
                       "slope_kib_per_report": slope,
                       "measures": {m: {"what": MEASURES[m][2], "steady_kib": v.steady, "reports": v.steady_reports,
                                        "threads": v.threads} for m, v in variants.items()}}
    g = GOALS
    if mem.steady:
        figures.append(Figure(STEADY, "MB", _mb(mem.steady), _mb(client_kib),
                              f"a bare awscrt MQTT5 client (awscrt's defaults, {before['client'][1]} threads), psutil "
                              f"imported, connected with mutual TLS to the same broker (mean of one before, one "
                              f"after); ours at {mem.steady_reports} accepted reports, interval 1 s, the unit's environment, "
                              f"{mem.threads} threads", g[STEADY], limit=1.3))
    else:
        figures.append(not_measured(STEADY, g[STEADY], f"the memory run did not reach {steady_at} reports: "
                                                       f"{mem.samples[-3:]}"))
    figures.extend(_breakdown(mem, variants, client_kib, bare_kib, imports_kib, interpreter_kib, metadata_kib))
    if mem.steady and mem.end and slope is not None and mem.end_reports and mem.steady_reports:
        measured = mem.end_reports - mem.steady_reports
        label = (f"extrapolated: {measured} reports measured in {mem.seconds:.0f} s at interval 1 s (the config's "
                 f"minimum; {GROWTH_TARGET:,} would take {GROWTH_TARGET / 3600:.1f} h, beyond the bench's budget): "
                 f"least-squares slope {slope:.3f} KiB/report over RSS every 25 reports x {GROWTH_TARGET:,}; "
                 f"measured growth {_mb(mem.end - mem.steady):.2f} MB ({_mb(mem.steady):.1f} -> {_mb(mem.end):.1f} MB "
                 f"from report {mem.steady_reports} to {mem.end_reports})")
        figures.append(Figure(GROWTH, "MB", max(0.0, slope) * GROWTH_TARGET / 1024.0, None, label, g[GROWTH],
                              judged="value", limit=2.0, compare="<"))
    else:
        figures.append(not_measured(GROWTH, g[GROWTH], f"the memory run gave too few samples: {mem.samples[-3:]}"))
    figures.extend(_idle_figures(extra["idle"]))
    fs = extra["fsync"]
    name = "fsyncs per report in the outbox"
    if "fsyncs_per_report" in fs:
        figures.append(Figure(name, "", fs["fsyncs_per_report_outbox"], None,
                              "strace -f, (25-report run - 5-report run) / 20; outbox.sqlite3* files", g[name],
                              judged="value", limit=3))
        figures.append(Figure("fsyncs per report, every state_dir file", "", fs["fsyncs_per_report"], None,
                              "same runs; the outbox plus the network-counter file and state_dir renames",
                              "at most 3 (if the whole state_dir counts)", judged="value", limit=3))
        name = "bytes written per report in the outbox"
        figures.append(Figure(name, "B", fs["bytes_per_report"], None, "write/pwrite64 to state_dir files",
                              g[name], judged="value"))
    else:
        figures.append(not_measured(name, g[name], fs["error"]))
        name = "bytes written per report in the outbox"
        figures.append(not_measured(name, g[name], fs["error"]))
    figures.extend(_start_figures(extra["start"]))
    return {"figures": figures, "extra": extra}


def _breakdown(mem: MemoryRun, variants: Dict[str, MemoryRun], client_kib: float, bare_kib: float,
               imports_kib: float, interpreter_kib: float, metadata_kib: float) -> List[Figure]:
    """Context rows: where the steady RSS goes, each part a difference of two processes measured in this run."""
    rows: List[Figure] = []

    def part(name: str, value_kib: float, how: str) -> None:
        share = f"{100.0 * value_kib / mem.steady:.0f} % of the steady RSS" if mem.steady else ""
        rows.append(Figure(f"breakdown: {name}", "MB", _mb(value_kib), None, f"{share}; {how}",
                           "context (where the steady RSS goes)", status="info"))

    if not mem.steady:
        return rows
    part("interpreter", interpreter_kib, "`python -c pass`, asleep (site, the editable install's finder)")
    part("awscrt (its native library) + psutil imported", bare_kib - interpreter_kib,
         "`import awscrt.io, awscrt.mqtt5, psutil` minus the interpreter")
    part("a connected awscrt MQTT5 client", client_kib - bare_kib,
         "the bare connected client minus its imports: awscrt's event-loop and resolver threads, "
         "TLS state, the connection")
    part("run's imports (agent, PyYAML, cbor2, sqlite3, ...)", imports_kib - bare_kib,
         "`import agent.cli, agent.commands.run, agent.scheduler, agent.sampling, agent.collectors.build, "
         "awscrt.mqtt5, psutil` minus `import awscrt.io, awscrt.mqtt5, psutil`")
    part("not loaded any more: importlib.metadata", metadata_kib - bare_kib,
         "the bare imports plus `importlib.metadata`, minus the bare imports: agent.collectors.registry "
         "imports it only to look up plugins, i.e. when a config names a type that is not built in")
    part("running: collector threads and samples, SQLite, malloc arenas, the responder's replies",
         mem.steady - client_kib - (imports_kib - bare_kib),
         "the running agent minus the connected client minus run's imports")
    for name, variant in variants.items():
        what = MEASURES[name][2]
        if variant.steady is None:
            rows.append(not_measured(f"measure: {what}", "context", f"the run did not reach {mem.steady_at} reports"))
            continue
        rows.append(Figure(f"measure: {what}", "MB", _mb(variant.steady), _mb(mem.steady),
                           f"the same run without it, at the same time ({variant.threads} vs {mem.threads} threads; "
                           f"{_mb(variant.steady - mem.steady):+.2f} MB); ratio to the bare client "
                           f"{variant.steady / client_kib:.2f}x", "context (what the measure buys)", status="info"))
    return rows


def _idle_figures(idle: Dict[str, Any]) -> List[Figure]:
    if "cpu" not in idle:
        return [not_measured(IDLE_WAKEUPS, GOALS[IDLE_WAKEUPS], idle["error"]),
                not_measured("idle CPU in 60 s between reports", GOALS["idle CPU in 60 s between reports"],
                             idle["error"])]
    expected = idle["pings"] + idle["due_events"]
    out = [
        Figure(IDLE_WAKEUPS, "", idle["main_voluntary"], expected or None,
               f"{idle['pings']} WATCHDOG=1 pings (WATCHDOG_USEC={idle['watchdog_usec'] // 1_000_000} s: one every "
               f"{idle['watchdog_usec'] / 2e6:.0f} s) + {idle['due_events']} due event(s) in {idle['seconds']:.0f} s, "
               f"interval 300 s; ours: voluntary context switches of the main thread "
               f"(/proc/PID/task/PID/status; involuntary: {idle['main_involuntary']}); every thread: "
               f"{idle['wakeups']}", GOALS[IDLE_WAKEUPS], limit=1.0),
        Figure("idle CPU in 60 s between reports", "s", idle["cpu"], None,
               f"/proc/PID/stat counts 10 ms ticks: {round(idle['cpu'] * 100)} tick(s)",
               GOALS["idle CPU in 60 s between reports"], judged="value", limit=0.05, compare="<"),
    ]
    if idle.get("sigterm_to_exit_s") is not None:
        out.append(Figure("context: SIGTERM to exit of the idle run", "s", idle["sigterm_to_exit_s"], None,
                          f"the loop asleep until its next deadline; 'Received SIGTERM' logged: "
                          f"{idle['sigterm_logged']}, exit status {idle['exit_status']}",
                          "context (signals are handled at once)", status="info"))
    return out


def _start_figures(starts: Dict[str, Any]) -> List[Figure]:
    """The start on the seeded outbox against the start on an empty state_dir (medians over the rounds).

    Not measured, with the reason, unless every seeded round's ledger is as expected.
    """
    rss_name = "context: RSS at the first accepted report, started on the 10,000-report outbox"
    rss_goal = "context (what the left-over outbox costs in memory)"
    outbox: List[Dict[str, Any]] = starts.get("outbox", [])
    empty: List[Dict[str, Any]] = starts.get("empty", [])
    problems = [f"round {i}: {p}" for i, run in enumerate(outbox) for p in run.get("problems", [])]
    why = starts.get("error") or "; ".join(problems) or ("" if outbox and empty else "no round ran")
    if why:
        return [not_measured(START, GOALS[START], why, "s"), not_measured(rss_name, rss_goal, why, "MB")]

    def median(runs: List[Dict[str, Any]], key: str) -> float:
        return float(statistics.median(float(r[key]) for r in runs))

    def listed(runs: List[Dict[str, Any]], key: str) -> str:
        return ", ".join(f"{float(r[key]):.2f}" for r in runs)

    seed, ledger = outbox[0]["seed"], outbox[0]["ledger"]
    superseded = sum(1 for r in outbox if r["ledger"]["newest_seeded"][0] == "superseded")
    fate = ("accepted" if not superseded else "superseded by the first fresh report (built before the connection "
            "was up)" + ("" if superseded == len(outbox) else f" in {superseded} of {len(outbox)} rounds, else accepted"))
    label = (f"`run` on an empty state_dir, interleaved, median of {len(empty)} (empty: {listed(empty, 'seconds')} s; "
             f"on the outbox: {listed(outbox, 'seconds')} s). Seeded: {seed['count']:,} pending reports of "
             f"{seed['payload_bytes']:,} bytes (CBOR short, {seed['outbox_payload_bytes'] / 1048576:.1f} MiB), "
             f"ids ending 30 days back. Ledger after: {ledger['older_seeded_superseded']:,} superseded at start in "
             f"one transaction, the newest seeded {fate}; outcomes (round 0) {ledger['outcomes']}. Time from starting `run` "
             f"to the first report's `accepted` in the ledger")
    rss_label = (f"the empty-state_dir start at its first accepted report, median of {len(empty)}; "
                 f"on the outbox: peak (VmHWM) {median(outbox, 'hwm_kib') / 1024.0:.1f} MB, "
                 f"{median(outbox, 'rss_settled_kib') / 1024.0:.1f} MB once nothing was pending")
    return [
        Figure(START, "s", median(outbox, "seconds"), median(empty, "seconds"), label, GOALS[START]),
        Figure(rss_name, "MB", median(outbox, "rss_kib") / 1024.0, median(empty, "rss_kib") / 1024.0, rss_label,
               rss_goal, status="info"),
    ]
