"""The fault campaign: ``python -m benchmarks.faults [--short] [--only NAME ...] [--no-docs]``.

Each scenario runs a bounded number of times on loopback only and records how
many runs it made, what was lost (the goal: nothing), any traceback, and how
long recovery took. Results go to benchmarks/results/faults.json (or
faults-short.json) and docs/RELIABILITY.md is rendered from the full run.
A scenario that cannot run here (no mosquitto, no permission to mount a
tmpfs) is recorded as "not run" with the reason, never with invented numbers.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from typing import Callable, Dict, List, Optional

from benchmarks import report
from benchmarks.common import RESULTS_DIR, log, machine_info
from benchmarks.faults import (
    broker_restarts,
    configs,
    corrupt,
    cuts,
    disk_full,
    exec_flood,
    exec_timeouts,
    kills,
    replies,
)
from benchmarks.faults.harness import SEED, Scenario

# In the order they run; the keys are the names `--only` takes.
SCENARIOS: Dict[str, Callable[[bool], Scenario]] = {
    "configs": configs.run,
    "replies": replies.run,
    "exec_timeouts": exec_timeouts.run,
    "exec_flood": exec_flood.run,
    "kills": kills.run,
    "broker": broker_restarts.run,
    "cuts": cuts.run,
    "disk_full": disk_full.run,
    "corrupt": corrupt.run,
}


def run_campaign(short: bool, only: Optional[List[str]] = None) -> List[Scenario]:
    results: List[Scenario] = []
    for key, fn in SCENARIOS.items():
        if only and key not in only:
            continue
        t0 = time.monotonic()
        log(f"Scenario {key}")
        sc = fn(short).finish()
        sc.seconds = round(time.monotonic() - t0, 1)
        log(
            f"  {sc.status}: {sc.runs} runs, {sc.failures} failures, {sc.lost} lost, {sc.outcomes} ({sc.seconds} s)"
        )
        results.append(sc)
    return results


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.faults", description=__doc__)
    parser.add_argument("--short", action="store_true", help="the short variant run by `make test` (< 60 s)")
    parser.add_argument("--only", nargs="*", choices=sorted(SCENARIOS))
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args(argv)
    results = run_campaign(args.short, args.only)
    name = "faults-short" if args.short else "faults"
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    data = {
        "name": name,
        "seed": SEED,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine_info(),
        "scenarios": [asdict(s) for s in results],
    }
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    log(f"Wrote {path}")
    if not args.short and not args.no_docs:
        report.render_reliability()
    return 1 if any(s.status == "failed" for s in results) else 0
