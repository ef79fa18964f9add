"""Shared pieces of the benchmarks: CPU timing, figures with goals, machine facts, result files.

Every figure is a ratio against a baseline measured in the same run, interleaved
with the measurement it is compared to, so drift in the machine (thermal
throttling, a neighbour's load) hits both sides alike.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"
WORK_DIR = ROOT / "benchmarks" / "work"


@dataclass
class Figure:
    """One measured figure, its baseline, and the goal it is judged against.

    ``ratio`` is value / baseline. ``goal`` is a human sentence; ``limit`` with
    ``compare`` ("<=" or "<") makes the judgement mechanical. A figure that could
    not be measured has ``status="not measured"`` and a ``reason``; it never
    carries a made-up value.
    """

    name: str
    unit: str = ""
    value: Optional[float] = None
    baseline: Optional[float] = None
    baseline_name: str = ""
    goal: str = ""
    judged: str = "ratio"  # "ratio" or "value": which number the limit applies to
    limit: Optional[float] = None
    compare: str = "<="
    status: str = ""  # "met", "missed", "info", "not measured"
    reason: str = ""
    extra: Dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> Optional[float]:
        if self.value is None or not self.baseline:
            return None
        return self.value / self.baseline

    def judge(self) -> Figure:
        if self.status == "not measured":
            return self
        subject = self.ratio if self.judged == "ratio" else self.value
        if self.limit is None or subject is None:
            self.status = self.status or "info"
            return self
        ok = subject <= self.limit if self.compare == "<=" else subject < self.limit
        self.status = "met" if ok else "missed"
        return self

    def to_json(self) -> Dict[str, Any]:
        out = asdict(self)
        out["ratio"] = self.ratio
        return out


def not_measured(name: str, goal: str, reason: str, unit: str = "") -> Figure:
    return Figure(name=name, unit=unit, goal=goal, status="not measured", reason=reason)


def cpu_seconds() -> float:
    """CPU time (user + system) of this process, all threads."""
    return time.process_time()


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_per_call(fn: Callable[[], Any], number: int) -> float:
    """CPU seconds per call of ``fn``, over ``number`` calls."""
    start = time.process_time()
    for _ in range(number):
        fn()
    return (time.process_time() - start) / number


def interleaved(
    candidates: Dict[str, Callable[[], Any]], number: int, repeats: int, warmup: int = 2
) -> Dict[str, Dict[str, float]]:
    """Time each candidate ``repeats`` times, alternating, ``number`` calls per round.

    Returns per candidate the median and the minimum CPU seconds per call.
    """
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    rounds: Dict[str, List[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            rounds[name].append(time_per_call(fn, number))
    return {
        name: {"median": statistics.median(values), "min": min(values), "rounds": len(values)}
        for name, values in rounds.items()
    }


def raise_nofile(wanted: int) -> int:
    """Raise the soft open-files limit towards ``wanted`` (at most the hard limit); return the new one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _version(module: str) -> Optional[str]:
    try:
        from importlib import metadata

        return metadata.version(module)
    except Exception:
        return None


def machine_info() -> Dict[str, Any]:
    """What the figures were measured on."""
    cpu_model = ""
    for line in _read("/proc/cpuinfo").splitlines():
        if line.lower().startswith(("model name", "hardware", "model")):
            cpu_model = line.split(":", 1)[1].strip()
            break
    mem_kb = 0
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    commit = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
    return {
        "cpu_model": cpu_model,
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_mb": mem_kb // 1024,
        "kernel": platform.release(),
        "machine": platform.machine(),
        "os": _read("/etc/os-release").split("PRETTY_NAME=", 1)[-1].split("\n", 1)[0].strip('"')
        or platform.system(),
        "python": platform.python_version(),
        "python_impl": platform.python_implementation(),
        "packages": {name: _version(name) for name in ("psutil", "cbor2", "awscrt", "awsiotsdk", "PyYAML")},
        "commit": commit,
        "load_average": list(os.getloadavg()),
    }


def write_result(name: str, figures: List[Figure], extra: Optional[Dict[str, Any]] = None) -> Path:
    """Write benchmarks/results/NAME.json with the figures, the machine and the time."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    data = {
        "name": name,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine_info(),
        "figures": [f.judge().to_json() for f in figures],
    }
    if extra:
        data.update(extra)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8")
    return path


def load_results() -> Dict[str, Dict[str, Any]]:
    out: Dict[str, Dict[str, Any]] = {}
    if RESULTS_DIR.is_dir():
        for path in sorted(RESULTS_DIR.glob("*.json")):
            try:
                out[path.stem] = json.loads(path.read_text(encoding="utf-8"))
            except ValueError:
                continue
    return out


def log(message: str) -> None:
    """Progress lines go to stderr so stdout stays machine-readable."""
    print(message, file=sys.stderr, flush=True)


def fmt_seconds(value: Optional[float]) -> str:
    if value is None:
        return "-"
    if value < 1e-3:
        return f"{value * 1e6:.1f} us"
    if value < 1:
        return f"{value * 1e3:.2f} ms"
    return f"{value:.2f} s"
