"""The running agent (`defender-agent run` against the local broker and responder).

Memory after 100 reports vs a bare `python -c "import awscrt, psutil"`; RSS growth
over 1,000 fast reports; idle CPU over 60 s; fsyncs and bytes written per report;
time to drain a 10,000-report backlog with `backlog: all`.

Every agent is a real `python -m agent run` subprocess with the real collectors
(listening_ports, tcp_connections, network_stats, system), CBOR short names, over
mutual TLS to a private mosquitto on 127.0.0.1, answered by the responder in this
process. Each concurrent agent has its own thing name.

Structure (so that `make bench` stays well under 15 minutes):

1. concurrently: the steady-RSS run (`run --reports 101` at interval 1 s, the config's
   minimum; RSS when 100 reports are accepted), the idle run (interval 300 s, 60 s
   measured) and the two strace runs (5 and 25 reports at 1 s);
2. the drain: bare awscrt baseline, then the agent on a 10,000-report backlog
   (`backlog: all`). "RSS growth over 1,000 fast reports" is measured here: the agent's
   RSS when 1,000 and when 2,000 backlog reports have settled (published and answered,
   taken from the outbox; not freshly sampled reports). The interval minimum is not
   lowered: the fast reports are the backlog's.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from benchmarks.common import WORK_DIR, Figure, log, not_measured

GOALS = {
    "steady RSS after 100 reports vs bare awscrt+psutil process": "at most 1.5x",
    "RSS growth over 1,000 fast reports": "under 2 MB",
    "idle CPU in 60 s between reports": "under 0.05 s; no busy polling",
    "fsyncs per report in the outbox": "at most 3",
    "bytes written per report in the outbox": "context",
    "drain a 10,000-report backlog (backlog: all)": "context (time to drain)",
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
    """Background: `run --reports N` at interval 1 s; RSS when ``steady_at`` and when N reports are accepted."""

    def __init__(self, rig: Any, work: Path, steady_at: int, growth_reports: int) -> None:
        from agent.devtools.rig import proc_rss_kib

        self.rig, self.work = rig, work
        self.steady_at, self.end_at = steady_at, steady_at + growth_reports
        self.state = work / "mem-state"
        self.log = work / "mem.log"
        cfg = rig.write_config(work / "mem.yaml", self.state, interval=1, thing="mem-gw")
        self.proc = rig.start_agent(cfg, self.log, "--reports", str(self.end_at))
        self.rss_kib = proc_rss_kib
        self.samples: List[Tuple[int, int]] = []  # (accepted, rss KiB)
        self.steady: Optional[int] = None
        self.end: Optional[int] = None
        self.bare_rss: Optional[int] = None
        self.steady_reports: Optional[int] = None  # accepted reports when the steady RSS was taken
        self.end_reports: Optional[int] = None
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
        """Called every few seconds by the driver: record RSS at the milestones."""
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
        if done >= self.end_at - 1:  # the last report settles and the process exits at once: take it now
            self.end, self.end_reports = rss, done
            log(f"  memory: RSS {rss} KiB after {done} reports")

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


def _seed_backlog(rig: Any, work: Path, count: int) -> Tuple[Path, Path]:
    """A state_dir whose outbox holds ``count`` pending reports (real collectors, CBOR short), none sent."""
    from agent.config.load import parse_config
    from agent.delivery.fold import rewrite
    from agent.delivery.outbox import Outbox, Pending
    from agent.report.builder import ReportBuilder
    from agent.report.model import Sample
    from agent.sampling import build_source

    state = work / "drain-state"
    cfg_path = rig.write_config(work / "drain.yaml", state, interval=300, backlog="all", drain_interval=0,
                                reply_timeout=120, retry_max_delay=120, thing="drain-gw")
    config = parse_config(cfg_path.read_text(), str(cfg_path))
    quiet = logging.getLogger("bench.drain")
    quiet.setLevel(logging.ERROR)
    source = build_source(config, quiet)
    samples: List[Sample] = list(source.sample())
    source.close()
    first = int(time.time()) - count - 10
    template = ReportBuilder(config, quiet).build(first, samples)
    box = Outbox.open(state, quiet)
    now = time.time()
    with box._tx():
        for i in range(count):
            rid = first + i
            payload = template.payload if i == 0 else rewrite(template.payload, rid, None)
            box._insert(Pending.new(rid, template.format, payload, now))
    box.close()
    copy = work / "drain-baseline.sqlite3"
    src = sqlite3_backup(state / "outbox.sqlite3", copy)
    return cfg_path, src


def sqlite3_backup(src: Path, dst: Path) -> Path:
    import sqlite3

    a, b = sqlite3.connect(str(src)), sqlite3.connect(str(dst))
    with b:
        a.backup(b)
    a.close()
    b.close()
    return dst


def _pending_count(state: Path) -> List[Tuple[int]]:
    """[(rows in the pending table,)] read-only; [] while the outbox is missing or busy."""
    import sqlite3

    db = state / "outbox.sqlite3"
    if not db.exists():
        return []
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return []
    try:
        return [tuple(r) for r in conn.execute("SELECT COUNT(*) FROM pending")]
    except sqlite3.Error:
        return []
    finally:
        conn.close()


class DrainSampler:
    """Poll the draining agent's RSS with the number of backlog reports settled (and published) so far.

    Settled = seeded count - rows still pending in the outbox (published and answered: accepted or
    rejected). Published = distinct "Published report N (" lines in the agent's log so far.
    """

    def __init__(self, proc: Any, state: Path, log_path: Path, count: int, milestones: Tuple[int, ...]) -> None:
        self.proc, self.state, self.log_path, self.count = proc, state, log_path, count
        self.milestones = milestones
        self.samples: List[Tuple[float, int, int, int]] = []  # (seconds, settled, published, rss KiB)
        self.at: Dict[int, Tuple[float, int, int, int]] = {}  # milestone -> first sample at or past it
        self.peak_kib = 0
        self._offset = 0
        self._published = 0
        self._t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="drain-rss", daemon=True)
        self._thread.start()

    def _read_published(self) -> int:
        try:
            with open(self.log_path, "rb") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
        except OSError:
            return self._published
        end = chunk.rfind(b"\n") + 1  # whole lines only
        self._published += len(re.findall(rb"Published report \d+ \(", chunk[:end]))
        self._offset += end
        return self._published

    def _loop(self) -> None:
        from agent.devtools.rig import proc_rss_kib

        deadline = time.monotonic() + 1500
        while not self._stop.is_set() and time.monotonic() < deadline and self.proc.poll() is None:
            rows = _pending_count(self.state)
            try:
                rss = proc_rss_kib(self.proc.pid)
            except OSError:
                break
            if rows:
                settled = self.count - int(rows[0][0])
                sample = (round(time.monotonic() - self._t0, 2), settled, self._read_published(), rss)
                self.peak_kib = max(self.peak_kib, rss)
                if not self.samples or settled - self.samples[-1][1] >= 100 or settled >= self.count:
                    self.samples.append(sample)
                for m in self.milestones:
                    if m not in self.at and settled >= m:
                        self.at[m] = sample
                        log(f"  drain: RSS {rss} KiB at {settled} settled, {sample[2]} published ({sample[0]} s)")
            self._stop.wait(0.2)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def measure_drain(rig: Any, work: Path, count: int, milestones: Tuple[int, ...]) -> Dict[str, Any]:
    from agent.devtools.rig import pending_ids, wait_until

    cfg, copy = _seed_backlog(rig, work, count)
    state = work / "drain-state"
    device = rig.pki.client("drain-gw")
    # Baseline first: the same payloads through a bare awscrt client, until every reply came back.
    out = subprocess.run([sys.executable, "-m", "benchmarks.drain_baseline", str(copy), str(device.cert),
                          str(device.key), str(rig.pki.ca), str(rig.broker.port), "drain-gw"],
                         capture_output=True, text=True, timeout=900, check=False)
    try:
        base = json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise RuntimeError(f"drain baseline failed: {out.stderr[-1500:]}") from None
    if not base.get("complete"):
        raise RuntimeError(f"drain baseline incomplete: {base}")
    log(f"  drain baseline: {base}")
    t0 = time.monotonic()
    proc = rig.start_agent(cfg, work / "drain.log")
    sampler = DrainSampler(proc, state, work / "drain.log", count, milestones)
    try:
        drained = wait_until(lambda: not pending_ids(state) or proc.poll() is not None, 1200, 0.5)
        seconds = time.monotonic() - t0
    finally:
        sampler.stop()
        rig.stop_agent(proc)
    text = (work / "drain.log").read_text()
    connected = re.search(r"over mutual TLS in ([\d.]+) s", text)
    return {
        "seconds": seconds,
        "drained": bool(drained) and not pending_ids(state),
        "baseline_seconds": base["seconds"] + base["connect_seconds"],
        "baseline": base,
        "connect_seconds": float(connected.group(1)) if connected else None,
        "resends": len(re.findall(r"Published report \d+ again", text)),
        "tracebacks": text.count("Traceback"),
        # (seconds since start, settled, published, RSS KiB)
        "rss_at": {str(m): list(v) for m, v in sorted(sampler.at.items())},
        "rss_peak_kib": sampler.peak_kib,
        "rss_samples": [list(x) for x in sampler.samples],
    }


def _guarded(extra: Dict[str, Any], name: str, fn: Any) -> None:
    log(f"  agent: {name}")
    try:
        extra[name] = fn()
    except Exception as exc:  # record, keep going: the other figures are still worth having
        extra[name] = {"error": f"{type(exc).__name__}: {exc}"}
    log(f"  agent: {name}: {extra[name]}")


def run(quick: bool = False) -> Dict[str, Any]:
    from agent.devtools.broker import find_mosquitto
    from agent.devtools.rig import Rig

    if find_mosquitto() is None:
        return {"figures": [not_measured(n, g, "mosquitto is not installed") for n, g in GOALS.items()]}
    work = WORK_DIR / "agent"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    steady_at = 20 if quick else 100
    idle_seconds = 10.0 if quick else 60.0
    drain_count = 1000 if quick else 10_000
    growth_from, growth_to = drain_count // 10, drain_count // 5  # 1,000 and 2,000 settled in the full run
    figures: List[Figure] = []
    extra: Dict[str, Any] = {}
    phases: Dict[str, float] = {}
    with Rig(work) as rig:
        bare = _bare_rss(rig)
        imports_rss = _bare_rss(rig, IMPORTS)
        for thing in ("mem-gw", "idle-gw", "strace-small-gw", "strace-large-gw", "drain-gw"):
            rig.pki.client(thing)  # issue every certificate here: openssl's CA serial file is not thread-safe
        # Phase 1: steady RSS, idle and strace runs at once (separate agents, thing names, state dirs).
        t0 = time.monotonic()
        mem = MemoryRun(rig, work, steady_at, 1)
        workers = [threading.Thread(target=_guarded, args=(extra, "idle", lambda: measure_idle(rig, work, idle_seconds)),
                                    name="idle"),
                   threading.Thread(target=_guarded, args=(extra, "fsync", lambda: measure_fsyncs(rig, work, 5, 25)),
                                    name="fsync")]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        log("  agent: waiting for the steady-RSS run")
        mem.wait(steady_at * 3.0 + 120)
        phases["concurrent: steady RSS, idle, fsync"] = round(time.monotonic() - t0, 1)
        bare_mid = _bare_rss(rig)
        # Phase 2: the drain, alone; RSS growth sampled while it settles the backlog.
        t0 = time.monotonic()
        _guarded(extra, "drain", lambda: measure_drain(rig, work, drain_count, (growth_from, growth_to)))
        phases["drain (baseline + agent)"] = round(time.monotonic() - t0, 1)
    bare_kib = (bare + bare_mid) / 2
    extra["phases_seconds"] = phases
    extra["memory"] = {"bare_rss_kib": [bare, bare_mid], "imports_rss_kib": imports_rss,
                       "steady_kib": mem.steady, "end_kib": mem.end,
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
    dr = extra["drain"]
    name = "RSS growth over 1,000 fast reports"
    at = dr.get("rss_at", {}) if isinstance(dr, dict) else {}
    a, b = at.get(str(growth_from)), at.get(str(growth_to))
    if a and b:
        label = (f"during the {drain_count:,}-report `backlog: all` drain: RSS at {a[1]:,} vs {b[1]:,} backlog "
                 f"reports settled (published and answered from the outbox, not freshly sampled); "
                 f"{a[2]:,} and {b[2]:,} published by then")
        figures.append(Figure(name, "MB", (b[3] - a[3]) / 1024.0, None, label, g[name],
                              judged="value", limit=2.0, compare="<"))
    else:
        figures.append(not_measured(name, g[name], f"the drain did not reach {growth_to:,} settled reports: "
                                                   f"{dr.get('error', at)}"))
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
    name = "drain a 10,000-report backlog (backlog: all)"
    if "seconds" in dr and dr.get("drained"):
        figures.append(Figure(name, "s", dr["seconds"], dr["baseline_seconds"],
                              f"bare awscrt publish loop of the same {drain_count:,} payloads until every reply",
                              g[name]))
    else:
        figures.append(not_measured(name, g[name], dr.get("error", f"did not drain: {dr}")))
    return {"figures": figures, "extra": extra}
