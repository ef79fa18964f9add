"""Run the benchmarks: ``python -m benchmarks.run [--quick] [--only NAME ...]``.

Each benchmark writes benchmarks/results/NAME.json (figures, machine, time);
then docs/BENCHMARKS.md and the charts are rendered from every result file.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from typing import List, Optional

from benchmarks.common import Figure, log, not_measured, raise_nofile, write_result

# name -> module; each module has run(quick) -> {"figures": [...], "extra": {...}}
BENCHMARKS = {
    "encoder": "benchmarks.bench_encoder",
    "sinks": "benchmarks.bench_sinks",
    "peer": "benchmarks.bench_peer",
    "sampling": "benchmarks.bench_sampling",
    "security": "benchmarks.bench_security",
    "logins": "benchmarks.bench_logins",
    "agent": "benchmarks.bench_agent",
    "cli": "benchmarks.bench_cli",
}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run, not for the docs)")
    parser.add_argument("--only", nargs="*", choices=sorted(BENCHMARKS), help="run only these")
    parser.add_argument("--no-docs", action="store_true", help="do not re-render docs/BENCHMARKS.md")
    args = parser.parse_args(argv)
    raise_nofile(4096)
    failed = 0
    started = time.monotonic()
    for name in args.only or list(BENCHMARKS):
        log(f"Benchmark {name}")
        t0 = time.monotonic()
        try:
            module = importlib.import_module(BENCHMARKS[name])
            out = module.run(quick=args.quick)
            figures: List[Figure] = out["figures"]
            extra = out.get("extra", {})
        except Exception as exc:
            failed += 1
            traceback.print_exc()
            figures = [not_measured(name, "", f"the benchmark failed: {type(exc).__name__}: {exc}")]
            extra = {}
        extra["seconds"] = round(time.monotonic() - t0, 1)
        extra["quick"] = args.quick
        path = write_result(name, figures, extra)
        log(f"  wrote {path} ({extra['seconds']} s)")
    log(f"Benchmarks done in {time.monotonic() - started:.0f} s")
    if not args.no_docs:
        from benchmarks import report

        report.render_benchmarks()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
