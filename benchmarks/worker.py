"""A sampling worker, run as a separate process so each side has its own interpreter.

    python benchmarks/worker.py MODE

MODE is ``floor`` (the raw psutil calls), ``aws`` (the AWS sample agent, run
with the interpreter of benchmarks/.venv-aws) or ``ours`` (defender-agent's
sampler + encoder). The worker reads one JSON command per line on stdin and
answers one JSON line on stdout, so the parent can interleave the sides
round by round against the same machine state. This file imports only the
standard library and psutil at the top: it must run in the AWS venv too.

Commands: ``{"n": 20, "format": "json", "key_names": "long"}`` -> ``{"cpu": seconds
per sample, "wall": ..., "bytes": payload size of the last sample, "error": null}``.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from typing import Any, Callable, Dict, Optional, Tuple

import psutil

Sampler = Callable[[], bytes]


def floor_factory(fmt: str, key_names: str) -> Sampler:
    """The raw psutil calls that gather what a report holds, and nothing else."""

    def sample() -> bytes:
        psutil.net_connections(kind="inet")  # listening tcp/udp + established tcp in one pass
        psutil.net_io_counters(pernic=True)
        psutil.cpu_percent(interval=None)
        return b""

    return sample


def aws_factory(fmt: str, key_names: str) -> Sampler:
    from AWSIoTDeviceDefenderAgentSDK import collector  # type: ignore[import-not-found]

    short = key_names == "short"
    col = collector.Collector(short_metrics_names=short)

    def sample() -> bytes:
        metrics = col.collect_metrics()
        if fmt == "cbor":
            return bytes(metrics.to_cbor())
        return metrics.to_json_string().encode("utf-8")

    return sample


def ours_factory(fmt: str, key_names: str) -> Sampler:
    from benchmarks.ours import make_sampler

    return make_sampler(fmt, key_names)


FACTORIES: Dict[str, Callable[[str, str], Sampler]] = {
    "floor": floor_factory,
    "aws": aws_factory,
    "ours": ours_factory,
}


def run_command(mode: str, cache: Dict[Tuple[str, str], Sampler], cmd: Dict[str, Any]) -> Dict[str, Any]:
    fmt = cmd.get("format", "json")
    key_names = cmd.get("key_names", "long")
    n = int(cmd.get("n", 10))
    fresh = bool(cmd.get("fresh", False))  # a new sampler for this command (first-sample cost)
    key = (fmt, key_names)
    error: Optional[str] = None
    payload = b""
    done = 0
    try:
        if fresh or key not in cache:
            cache[key] = FACTORIES[mode](fmt, key_names)
            if not fresh:
                cache[key]()  # warm-up: first sample primes cpu_percent and delta counters
        sampler = cache[key]
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for _ in range(n):
            payload = sampler()
            done += 1
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    except Exception as exc:
        cache.pop(key, None)
        error = f"{type(exc).__name__}: {exc} (after {done} sample(s) in this command)"
        tb = traceback.format_exc(limit=3)
        return {"error": error, "traceback": tb, "done": done}
    return {"cpu": cpu / n, "wall": wall / n, "bytes": len(payload), "error": None, "done": done}


def main() -> int:
    mode = sys.argv[1]
    if mode == "ours":
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    cache: Dict[Tuple[str, str], Sampler] = {}
    print(json.dumps({"ready": mode, "pid": os.getpid()}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        reply = run_command(mode, cache, json.loads(line))
        print(json.dumps(reply), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
