"""Sampling cost per report cycle (collect + encode + write to outbox) versus the raw psutil floor.

Goal: at most 1.3x the CPU time of the raw calls that gather the same data
(benchmarks/worker.py ``floor_factory``: each call our collectors make, once).
Ours is the real Sampler over the collectors of config/agent.example.yaml
(standard + system + disk; profile ``full`` in benchmarks/ours.py) and the
ReportBuilder; the outbox write joins when agent.outbox.store is on the
branch. Both sides are separate worker processes taking turns round by round.

Also the growth with custom metrics: 0, 10 and 100 ``file`` collectors (one
custom metric each) on top of the full profile.
"""

from __future__ import annotations

from typing import Any, Dict, List

from benchmarks.common import Figure, log, not_measured
from benchmarks.workers import Worker, rounds

GOAL = "collect + encode + outbox write at most 1.3x the raw psutil floor"
CUSTOM_GOAL = "100 custom metrics: cost grows linearly or better (cost per metric not rising)"
CUSTOM_STEPS = (0, 10, 100)
NO_OUTBOX = "collect + encode only: agent.outbox.store is not on this branch yet (the write is not counted)"


def _check(side: Dict[str, Any], label: str) -> None:
    if side.get("errors"):
        raise RuntimeError(f"{label}: {side['errors']}")


def run(quick: bool = False) -> Dict[str, Any]:
    workers = {"floor": Worker("floor"), "ours": Worker("ours")}
    figures: List[Figure] = []
    table: List[Dict[str, Any]] = []
    n, repeats = (3, 3) if quick else (10, 9)
    try:
        probe = workers["ours"].sample(2, profile="full")
        if probe.get("error"):
            reason = probe["error"].split(" (after ", 1)[0]
            return {
                "figures": [
                    not_measured("report cycle CPU vs raw psutil floor", GOAL, reason, unit="s"),
                    not_measured("report cycle with 100 custom metrics", CUSTOM_GOAL, reason, unit="s"),
                ]
            }
        if probe.get("collector_failures"):
            raise RuntimeError(f"collectors failed in the benchmark config: {probe['collector_failures']}")
        outbox = bool(probe.get("outbox"))
        for fmt, key_names in (("json", "long"), ("cbor", "short")):
            got = rounds(workers, n, repeats, fmt=fmt, key_names=key_names, profile="full")
            for side, row in got.items():
                _check(row, side)
                table.append({"profile": "full", "format": fmt, "key_names": key_names, "side": side, **row})
            log(
                f"  cycle {fmt} {key_names}: ours {got['ours']['cpu'] * 1e3:.2f} ms "
                f"vs floor {got['floor']['cpu'] * 1e3:.2f} ms ({got['ours']['bytes']} B)"
            )
            figures.append(
                Figure(
                    name=f"report cycle CPU vs raw psutil floor ({fmt} {key_names})",
                    unit="s",
                    value=got["ours"]["cpu"],
                    baseline=got["floor"]["cpu"],
                    baseline_name="the same psutil and /proc reads, each once",
                    goal=GOAL,
                    limit=1.3,
                    reason="" if outbox else NO_OUTBOX,
                    extra={
                        "includes_outbox_write": outbox,
                        "wall_ours": got["ours"]["wall"],
                        "wall_floor": got["floor"]["wall"],
                        "min_ours": got["ours"]["cpu_min"],
                        "min_floor": got["floor"]["cpu_min"],
                        "report_bytes": got["ours"]["bytes"],
                        "cycles_per_round": n,
                        "rounds": repeats,
                    },
                )
            )
        costs: Dict[str, Dict[int, float]] = {"ours": {}, "floor": {}}
        for custom in CUSTOM_STEPS:
            got = rounds(workers, n, repeats, profile="full", custom=custom)
            for side, row in got.items():
                _check(row, f"{side} with {custom} custom metrics")
                costs[side][custom] = row["cpu"]
                table.append({"profile": "full", "custom": custom, "side": side, **row})
            log(
                f"  {custom} custom metrics: ours {got['ours']['cpu'] * 1e3:.2f} ms "
                f"vs floor {got['floor']['cpu'] * 1e3:.2f} ms"
            )
        figures.extend(_custom_figures(costs, outbox))
    finally:
        for worker in workers.values():
            worker.close()
    return {"figures": figures, "extra": {"table": table}}


def _custom_figures(costs: Dict[str, Dict[int, float]], outbox: bool) -> List[Figure]:
    ours, floor = costs["ours"], costs["floor"]
    per_low = (ours[10] - ours[0]) / 10
    per_high = (ours[100] - ours[10]) / 90
    superlinear = per_high > 1.5 * per_low if per_low > 0 else False
    growth = Figure(
        name="report cycle with 100 custom metrics (file collectors) vs none",
        unit="s",
        value=ours[100],
        baseline=ours[0],
        baseline_name="same cycle without them",
        goal=CUSTOM_GOAL,
        judged="value",
        reason="" if outbox else NO_OUTBOX,
        extra={
            "series": ours,
            "floor_series": floor,
            "per_metric_0_10": per_low,
            "per_metric_10_100": per_high,
            "superlinear": superlinear,
            "includes_outbox_write": outbox,
        },
    )
    growth.status = "missed" if superlinear else "met"
    versus = Figure(
        name="report cycle with 100 custom metrics vs raw floor (same reads + 100 file reads)",
        unit="s",
        value=ours[100],
        baseline=floor[100],
        baseline_name="raw reads",
        goal="context (the 1.3x goal is for the standard cycle)",
    )
    return [growth, versus]
