"""The running agent (`defender-agent run` against the local broker and responder).

Memory after 100 reports vs a bare `python -c "import awscrt, psutil"`; RSS growth
from the 100th to the 300th report; idle CPU over 60 s; fsyncs and bytes written per
report; the start on a 10,000-report outbox that an older version left behind.

Every agent is a real `python -m agent run` subprocess with the real collectors
(listening_ports, tcp_connections, network_stats, system), CBOR short names, over
mutual TLS to a private mosquitto on 127.0.0.1, answered by the responder in this
process. Each concurrent agent has its own thing name.

Structure (so that `make bench` stays well under 15 minutes):

1. concurrently: the memory run (`run` at interval 1 s, the config's minimum, stopped
   once 300 reports are accepted; RSS when 100 and when 300 are: "steady RSS" and "RSS
   growth over 200 reports"), the idle run (interval 300 s, 60 s measured) and the two
   strace runs (5 and 25 reports at 1 s). The memory run sets the phase's length (~300 s);
2. alone: the start on an empty state_dir (the baseline), then the start on an outbox
   holding 10,000 pending, never-published reports with ids far in the past, as an
   older version that kept every report for a drain could leave it. `backlog: newest`
   supersedes all but the newest in one transaction at start; measured: process start
   to the first accepted report, the RSS then, and the ledger afterwards. Three rounds,
   interleaved, medians (a round takes about 2 s).

`--quick` runs the memory run to 50 reports (RSS at 20 and 50), idles 10 s and runs one
start-up round (still on 10,000 reports).
"""

from __future__ import annotations

import logging
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from benchmarks.common import WORK_DIR, Figure, log, not_measured

GROWTH = "RSS growth over 200 reports"
START = "start on a 10,000-report outbox left by an older version"
SEEDED = 10_000
SEED_AGE = 30 * 86400  # the seeded ids end 30 days back: far below the epoch-second ids the agent builds next

GOALS = {
    "steady RSS after 100 reports vs bare awscrt+psutil process": "at most 1.5x",
    GROWTH: "under 2 MB",
    "idle CPU in 60 s between reports": "under 0.05 s; no busy polling",
    "fsyncs per report in the outbox": "at most 3",
    "bytes written per report in the outbox": "context",
    START: "context (time to the first accepted report)",
}

BARE = "import awscrt, psutil, sys, time; sys.stdout.write('ready\\n'); sys.stdout.flush(); time.sleep(3600)"
# Context: the agent's own imports (scheduler, collectors) without connecting or sampling.
IMPORTS = ("import agent.scheduler, agent.collectors.build, sys, time; sys.stdout.write('ready\\n'); "
           "sys.stdout.flush(); time.sleep(3600)")


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
    """Background: `run` at interval 1 s; RSS when ``steady_at`` and when ``end_at`` reports are accepted.

    No `--reports N`: a round that runs late is followed by one at once, which supersedes the report
    before it (seen once in 300), so N built reports can be N - 1 accepted and the process would exit
    before the RSS at ``end_at`` is read. :meth:`wait` stops the agent once ``end_at`` are accepted.
    """

    def __init__(self, rig: Any, work: Path, steady_at: int, end_at: int) -> None:
        from agent.devtools.rig import proc_rss_kib

        self.rig, self.work = rig, work
        self.steady_at, self.end_at = steady_at, end_at
        self.state = work / "mem-state"
        self.log = work / "mem.log"
        cfg = rig.write_config(work / "mem.yaml", self.state, interval=1, thing="mem-gw")
        self.proc = rig.start_agent(cfg, self.log)
        self.rss_kib = proc_rss_kib
        self.samples: List[Tuple[int, int]] = []  # (accepted, rss KiB)
        self.steady: Optional[int] = None
        self.end: Optional[int] = None
        self.steady_reports: Optional[int] = None  # accepted reports when the steady RSS was taken
        self.end_reports: Optional[int] = None
        self.started = time.monotonic()
        self.seconds: Optional[float] = None  # start to the end_at-th accepted report
        self._stop = threading.Event()
        # Poll in a thread of our own: the milestones must be caught while the driver measures other figures.
        self._thread = threading.Thread(target=self._poll_loop, name="memory-poll", daemon=True)
        self._thread.start()

    def _poll_loop(self) -> None:
        deadline = time.monotonic() + (self.end_at * 3 + 600)
        while not self._stop.is_set() and time.monotonic() < deadline and self.end is None:
            self.poll()
            self._stop.wait(0.1)

    def poll(self) -> None:
        """Record RSS at the milestones (and every 50 accepted reports)."""
        from agent.devtools.rig import accepted_count

        if self.proc.poll() is not None or self.end is not None:
            return
        done = accepted_count(self.state)
        try:
            rss = self.rss_kib(self.proc.pid)
        except OSError:
            return
        if not self.samples or done - self.samples[-1][0] >= 50:
            self.samples.append((done, rss))
        if self.steady is None and done >= self.steady_at:
            self.steady, self.steady_reports = rss, done
            log(f"  memory: steady RSS {rss} KiB after {done} reports")
        if done >= self.end_at:
            self.end, self.end_reports = rss, done
            self.seconds = round(time.monotonic() - self.started, 1)
            log(f"  memory: RSS {rss} KiB after {done} reports ({self.seconds} s)")

    def wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.end is None and self.proc.poll() is None:
            time.sleep(0.2)
        self._stop.set()
        self._thread.join(5)
        self.rig.stop_agent(self.proc)


def _bare_rss(rig: Any, code: str = BARE) -> int:
    from agent.devtools.rig import proc_rss_kib

    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        time.sleep(1.0)
        return proc_rss_kib(proc.pid)
    finally:
        proc.kill()
        proc.wait(5)


def measure_idle(rig: Any, work: Path, seconds: float) -> Dict[str, Any]:
    from agent.devtools.rig import accepted_count, proc_cpu_seconds, wait_until

    state = work / "idle-state"
    cfg = rig.write_config(work / "idle.yaml", state, interval=300, reply_timeout=30, retry_max_delay=60,
                           thing="idle-gw")
    proc = rig.start_agent(cfg, work / "idle.log")
    try:
        if not wait_until(lambda: accepted_count(state) >= 1, 30, 0.2):
            raise RuntimeError("the idle agent's first report was not accepted within 30 s")
        time.sleep(5.0)  # settle: the first report's replies, status writes
        cpu0, ctx0, t0 = proc_cpu_seconds(proc.pid), _threads_ctx_switches(proc.pid), time.monotonic()
        time.sleep(seconds)
        cpu1, ctx1, t1 = proc_cpu_seconds(proc.pid), _threads_ctx_switches(proc.pid), time.monotonic()
        built = len(re.findall(r"Built report", (work / "idle.log").read_text()))
    finally:
        rig.stop_agent(proc)
    return {"cpu": cpu1 - cpu0, "seconds": t1 - t0, "wakeups": ctx1 - ctx0, "reports_built": built}


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
    from agent.delivery.fold import rewrite
    from agent.delivery.outbox import Outbox, Pending
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
    fmt = template.format.value
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
    from agent.devtools.rig import pending_ids, wait_until

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


def run(quick: bool = False) -> Dict[str, Any]:
    from agent.devtools.broker import find_mosquitto
    from agent.devtools.rig import Rig, ledger

    if find_mosquitto() is None:
        return {"figures": [not_measured(n, g, "mosquitto is not installed") for n, g in GOALS.items()]}
    work = WORK_DIR / "agent"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    steady_at, growth_to = (20, 50) if quick else (100, 300)
    idle_seconds = 10.0 if quick else 60.0
    start_rounds = 1 if quick else 3
    figures: List[Figure] = []
    extra: Dict[str, Any] = {}
    phases: Dict[str, float] = {}
    with Rig(work) as rig:
        bare = _bare_rss(rig)
        imports_rss = _bare_rss(rig, IMPORTS)
        things = ["mem-gw", "idle-gw", "strace-small-gw", "strace-large-gw",
                  *(f"start-{kind}-{i}-gw" for i in range(start_rounds) for kind in ("empty", "outbox"))]
        for thing in things:
            rig.pki.client(thing)  # issue every certificate here: openssl's CA serial file is not thread-safe
        # Phase 1: memory, idle and strace runs at once (separate agents, thing names, state dirs).
        t0 = time.monotonic()
        mem = MemoryRun(rig, work, steady_at, growth_to)
        workers = [threading.Thread(target=_guarded, args=(extra, "idle", lambda: measure_idle(rig, work, idle_seconds)),
                                    name="idle"),
                   threading.Thread(target=_guarded, args=(extra, "fsync", lambda: measure_fsyncs(rig, work, 5, 25)),
                                    name="fsync")]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        log("  agent: waiting for the memory run")
        mem.wait(max(0.0, growth_to * 3.0 + 120 - (time.monotonic() - t0)))
        phases["concurrent: memory (steady RSS, growth), idle, fsync"] = round(time.monotonic() - t0, 1)
        bare_mid = _bare_rss(rig)
        # Phase 2, alone: start on an empty state_dir (baseline), then on the outbox an older version left.
        t0 = time.monotonic()
        _guarded(extra, "start", lambda: measure_starts(rig, work, start_rounds))
        phases[f"start: empty state_dir and the 10,000-report outbox, {start_rounds} round(s)"] = round(
            time.monotonic() - t0, 1)
    bare_kib = (bare + bare_mid) / 2
    extra["phases_seconds"] = phases
    extra["memory"] = {"bare_rss_kib": [bare, bare_mid], "imports_rss_kib": imports_rss,
                       "steady_kib": mem.steady, "end_kib": mem.end, "seconds_to_end": mem.seconds,
                       "outcomes": dict(Counter(ledger(mem.state).values())),
                       "samples": mem.samples, "reports": [mem.steady_reports, mem.end_reports]}
    g = GOALS
    name = "steady RSS after 100 reports vs bare awscrt+psutil process"
    if mem.steady:
        figures.append(Figure(name, "MB", mem.steady / 1024.0, bare_kib / 1024.0,
                              f"bare `python -c 'import awscrt, psutil'` (mean of one before, one after); "
                              f"ours taken at {mem.steady_reports} accepted reports, interval 1 s",
                              g[name], limit=1.5))
    else:
        figures.append(not_measured(name, g[name], f"the memory run did not reach {steady_at} reports: "
                                                   f"{mem.samples[-3:]}"))
    figures.append(Figure("context: RSS of `import agent.scheduler, agent.collectors.build`, not connected", "MB",
                          imports_rss / 1024.0, bare_kib / 1024.0,
                          "bare `python -c 'import awscrt, psutil'`", "context (what the imports alone cost)",
                          status="info"))
    name = GROWTH if growth_to - steady_at == 200 else f"RSS growth over {growth_to - steady_at} reports"
    if mem.steady and mem.end:
        label = (f"one `run` at interval 1 s (the config's minimum): RSS at "
                 f"{mem.steady_reports} vs {mem.end_reports} accepted reports, freshly sampled and published "
                 f"({mem.steady / 1024.0:.1f} -> {mem.end / 1024.0:.1f} MB)")
        figures.append(Figure(name, "MB", (mem.end - mem.steady) / 1024.0, None, label, g[GROWTH],
                              judged="value", limit=2.0, compare="<"))
    else:
        figures.append(not_measured(name, g[GROWTH], f"the memory run did not reach {growth_to} accepted reports: "
                                                     f"{mem.samples[-3:]}"))
    idle = extra["idle"]
    name = "idle CPU in 60 s between reports"
    if "cpu" in idle:
        figures.append(Figure(name, "s", idle["cpu"], None,
                              f"{idle['wakeups']} thread wake-ups in {idle['seconds']:.0f} s; /proc/PID/stat counts "
                              f"10 ms ticks: {round(idle['cpu'] * 100)} tick(s)", g[name],
                              judged="value", limit=0.05, compare="<"))
    else:
        figures.append(not_measured(name, g[name], idle["error"]))
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
