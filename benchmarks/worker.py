"""A sampling worker, run as a separate process so each side has its own interpreter.

    python benchmarks/worker.py MODE

MODE is ``floor`` (the raw psutil calls), ``aws`` (the AWS sample agent, run
with the interpreter of benchmarks/.venv-aws) or ``ours`` (defender-agent's
sampler + encoder). The worker reads one JSON command per line on stdin and
answers one JSON line on stdout, so the parent can interleave the sides
round by round against the same machine state. This file imports only the
standard library and psutil at the top: it must run in the AWS venv too.

Commands: ``{"n": 20, "format": "json", "key_names": "long", "profile": "peer", "custom": 0}`` -> ``{"cpu": seconds
per sample, "wall": ..., "bytes": payload size of the last sample, "error": null}``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import traceback
from typing import Any, Callable, Dict, Optional, Tuple

import psutil

Sampler = Callable[[], bytes]


def _read(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def floor_factory(fmt: str, key_names: str, profile: str = "peer", custom: int = 0) -> Sampler:
    """The raw calls that gather what our collectors of ``profile`` gather, each once, nothing else.

    Matched to agent/collectors (read them when a collector changes):
    listening_ports + tcp_connections: psutil.net_connections("inet") and psutil.net_if_addrs();
    network_stats: /proc/net/dev, /sys/class/net/IF/ifindex per interface, the boot id (not psutil);
    system cpu_usage: psutil.cpu_times() and cpu_times(percpu=True);
    ``full`` adds every other system metric and disk usage of /; ``custom`` reads N small files.
    """
    me = psutil.Process()
    files = []
    if custom:
        import tempfile
        from pathlib import Path

        from benchmarks.ours import write_custom_files

        files = [str(p) for p in write_custom_files(Path(tempfile.mkdtemp(prefix="defender-floor-")), custom)]

    def sample() -> bytes:
        psutil.net_connections(kind="inet")
        psutil.net_if_addrs()
        dev = _read("/proc/net/dev").decode("ascii")
        for line in dev.splitlines()[2:]:
            name = line.split(":", 1)[0].strip()
            with contextlib.suppress(OSError):
                _read(f"/sys/class/net/{name}/ifindex")
        _read("/proc/sys/kernel/random/boot_id")
        psutil.cpu_times(percpu=False)
        psutil.cpu_times(percpu=True)
        if profile == "full":
            psutil.virtual_memory()
            psutil.swap_memory()
            psutil.getloadavg()
            psutil.sensors_temperatures()
            psutil.boot_time()
            psutil.pids()
            psutil.users()
            me.num_fds()
            psutil.disk_usage("/")
        for path in files:
            _read(path)
        return b""

    return sample


def aws_factory(fmt: str, key_names: str, profile: str = "peer", custom: int = 0) -> Sampler:
    from AWSIoTDeviceDefenderAgentSDK import collector  # type: ignore[import-not-found]

    short = key_names == "short"
    col = collector.Collector(short_metrics_names=short)

    def sample() -> bytes:
        metrics = col.collect_metrics()
        if fmt == "cbor":
            return bytes(metrics.to_cbor())
        return metrics.to_json_string().encode("utf-8")

    return sample


def ours_factory(fmt: str, key_names: str, profile: str = "peer", custom: int = 0) -> Sampler:
    from benchmarks.ours import make_sampler

    return make_sampler(fmt, key_names, profile, custom)


FACTORIES: Dict[str, Callable[[str, str, str, int], Sampler]] = {
    "floor": floor_factory,
    "aws": aws_factory,
    "ours": ours_factory,
}


def run_command(mode: str, cache: Dict[Tuple[str, str, str, int], Sampler], cmd: Dict[str, Any]) -> Dict[str, Any]:
    fmt = cmd.get("format", "json")
    key_names = cmd.get("key_names", "long")
    profile = cmd.get("profile", "peer")
    custom = int(cmd.get("custom", 0))
    n = int(cmd.get("n", 10))
    fresh = bool(cmd.get("fresh", False))  # a new sampler for this command (first-sample cost)
    key = (fmt, key_names, profile, custom)
    error: Optional[str] = None
    payload = b""
    done = 0
    try:
        if fresh or key not in cache:
            cache[key] = FACTORIES[mode](fmt, key_names, profile, custom)
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
    reply: Dict[str, Any] = {"cpu": cpu / n, "wall": wall / n, "bytes": len(payload), "error": None, "done": done}
    cycle = getattr(sampler, "__self__", None)  # ours: the Cycle, to report collector failures
    if cycle is not None and getattr(cycle, "last_round", None) is not None:
        reply["collector_failures"] = {f.collector: f.reason for f in cycle.last_round.failures}
        reply["outbox"] = bool(cycle.includes_outbox)
    return reply


def main() -> int:
    mode = sys.argv[1]
    if mode == "ours":
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    cache: Dict[Tuple[str, str, str, int], Sampler] = {}
    print(json.dumps({"ready": mode, "pid": os.getpid()}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        reply = run_command(mode, cache, json.loads(line))
        print(json.dumps(reply), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
