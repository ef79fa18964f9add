"""Side by side with the AWS sample agent, and both against the raw psutil floor; plus connection scale.

Three worker processes (floor, AWS sample agent in its own virtualenv, ours)
take turns, round by round, so they see the same machine state. The scale
part repeats this with 10, 1,000 and 10,000 established loopback connections.
"""

from __future__ import annotations

from typing import Any, Dict, List

from benchmarks.common import Figure, log, not_measured
from benchmarks.loopback import LoopbackConnections
from benchmarks.workers import Worker, aws_versions, ensure_aws_venv, rounds

PEER_GOAL_CPU = "our per-sample CPU time no higher than the AWS sample agent's (ratio <= 1.0)"
PEER_GOAL_BYTES = "our CBOR short-name report smaller than the AWS agent's report (ratio < 1.0)"
SCALE_GOAL = "sampling cost grows linearly or better with connections (cost per connection not rising)"
SCALES = (10, 1000, 10000)


def _start(python_aws: str) -> Dict[str, Worker]:
    workers = {"floor": Worker("floor"), "aws": Worker("aws", python_aws)}
    try:
        ours = Worker("ours")
        probe = ours.sample(1)
        if probe.get("error"):
            probe["error"] = probe["error"].split(" (after ", 1)[0]
            log(f"  ours: not measurable: {probe['error']}")
            ours.close()
            workers["ours_error"] = probe["error"]  # type: ignore[assignment]
        else:
            workers["ours"] = ours
    except RuntimeError as exc:
        workers["ours_error"] = str(exc)  # type: ignore[assignment]
    return workers


def run(quick: bool = False) -> Dict[str, Any]:
    python_aws = str(ensure_aws_venv())
    started = _start(python_aws)
    ours_error = started.pop("ours_error", None)
    workers: Dict[str, Worker] = started
    figures: List[Figure] = []
    table: List[Dict[str, Any]] = []
    n, repeats = (3, 3) if quick else (10, 7)
    try:
        for fmt in ("json", "cbor"):
            for key_names in ("long", "short"):
                got = rounds(workers, n, repeats, fmt=fmt, key_names=key_names)
                if got["aws"]["errors"]:
                    # With short names the AWS agent fails from its second sample: time its first alone.
                    first = rounds(
                        {"aws": workers["aws"]}, 1, repeats, fmt=fmt, key_names=key_names, fresh=True
                    )["aws"]
                    got["aws_first_sample"] = first
                for side, row in got.items():
                    table.append({"format": fmt, "key_names": key_names, "side": side, **row})
                log(
                    f"  peer {fmt} {key_names}: "
                    + ", ".join(
                        f"{side} {row['cpu'] * 1e3:.2f} ms/{row['bytes']} B"
                        if row["cpu"]
                        else f"{side} failed {row['errors']}"
                        for side, row in got.items()
                    )
                )
        figures.extend(_peer_figures(table, ours_error))
        figures.extend(_scale(workers, quick, ours_error))
    finally:
        for worker in workers.values():
            worker.close()
    return {"figures": figures, "extra": {"peer_table": table, "aws_venv": aws_versions(ensure_aws_venv())}}


def _row(table: List[Dict[str, Any]], side: str, fmt: str, key_names: str) -> Dict[str, Any]:
    for row in table:
        if (row["side"], row["format"], row["key_names"]) == (side, fmt, key_names):
            return row
    return {}


def _peer_figures(table: List[Dict[str, Any]], ours_error: Any) -> List[Figure]:
    figures = []
    floor = _row(table, "floor", "json", "long")
    aws = _row(table, "aws", "json", "long")
    figures.append(
        Figure(
            name="AWS sample agent per-sample CPU vs raw psutil floor (json long)",
            unit="s",
            value=aws.get("cpu"),
            baseline=floor.get("cpu"),
            baseline_name="raw psutil calls",
            goal="context: LIBRARY-NOTES measured about 2x",
        )
    )
    short = _row(table, "aws", "json", "short")
    figures.append(
        Figure(
            name="AWS sample agent with short names, second sample",
            goal="context: a baseline that cannot run steadily with short names",
            status="info",
            reason="; ".join(short.get("errors", [])) or "no error",
        )
    )
    for fmt, key_names in (("json", "long"), ("json", "short"), ("cbor", "long"), ("cbor", "short")):
        name = f"our per-sample CPU vs AWS sample agent ({fmt} {key_names})"
        if ours_error:
            figures.append(not_measured(name, PEER_GOAL_CPU, str(ours_error), unit="s"))
            continue
        ours = _row(table, "ours", fmt, key_names)
        theirs = _row(table, "aws", fmt, key_names)
        base_name = "AWS sample agent, steady state"
        if not theirs.get("cpu"):
            theirs = _row(table, "aws_first_sample", fmt, key_names)
            base_name = "AWS sample agent, first sample only (it fails on later ones)"
        figures.append(
            Figure(
                name=name,
                unit="s",
                value=ours.get("cpu"),
                baseline=theirs.get("cpu"),
                baseline_name=base_name,
                goal=PEER_GOAL_CPU,
                limit=1.0,
            )
        )
    name = "our CBOR short report bytes vs AWS sample agent report bytes"
    if ours_error:
        figures.append(not_measured(name, PEER_GOAL_BYTES, str(ours_error), unit="B"))
    else:
        ours = _row(table, "ours", "cbor", "short")
        for fmt, key_names in (("json", "long"), ("cbor", "long")):
            theirs = _row(table, "aws", fmt, key_names)
            figures.append(
                Figure(
                    name=f"{name} ({fmt} {key_names})",
                    unit="B",
                    value=ours.get("bytes"),
                    baseline=theirs.get("bytes"),
                    baseline_name=f"AWS agent {fmt} {key_names}",
                    goal=PEER_GOAL_BYTES,
                    limit=1.0,
                    compare="<",
                )
            )
    return figures


def _scale(workers: Dict[str, Worker], quick: bool, ours_error: Any) -> List[Figure]:
    figures: List[Figure] = []
    costs: Dict[str, Dict[int, float]] = {}
    for count in SCALES:
        with LoopbackConnections(count) as fixture:
            # The AWS agent costs ~1 ms per connection (net_if_addrs per connection): 1 sample at 10,000.
            big = count >= 10000
            sides = {name: w for name, w in workers.items() if not (big and quick and name == "aws")}
            got = rounds(sides, 1, 1 if big else 3)
            log(
                f"  scale {count} (set up in {fixture.setup_seconds:.1f} s): "
                + ", ".join(f"{side} {row['cpu'] * 1e3:.1f} ms" for side, row in got.items() if row["cpu"])
            )
            for side, row in got.items():
                if row["cpu"]:
                    costs.setdefault(side, {})[count] = row["cpu"]
    for side, label in (
        ("floor", "raw psutil floor"),
        ("aws", "AWS sample agent"),
        ("ours", "defender-agent"),
    ):
        series = costs.get(side, {})
        name = f"sampling cost with 10 / 1,000 / 10,000 connections: {label}"
        if side == "ours" and ours_error:
            figures.append(not_measured(name, SCALE_GOAL, str(ours_error), unit="s"))
            continue
        if len(series) < 2:
            figures.append(not_measured(name, SCALE_GOAL, "too few scale points measured", unit="s"))
            continue
        low, high = min(series), max(series)
        # Growth exponent between the smallest and largest scale, on the part above the 10-connection cost.
        per_conn_mid = (series.get(1000, 0) - series[low]) / (1000 - low) if 1000 in series else None
        per_conn_high = (series[high] - series[low]) / (high - low)
        figures.append(
            Figure(
                name=name,
                unit="s",
                value=series[high],
                baseline=series[low],
                baseline_name=f"same side at {low} connections",
                goal=SCALE_GOAL if side == "ours" else "context",
                judged="value" if side == "ours" else "ratio",
                extra={
                    "series": series,
                    "per_connection_1000": per_conn_mid,
                    "per_connection_10000": per_conn_high,
                    "superlinear": bool(per_conn_mid and per_conn_high > 1.5 * per_conn_mid),
                },
            )
        )
        if side == "ours":
            figures[-1].status = "missed" if figures[-1].extra["superlinear"] else "met"
    return figures
