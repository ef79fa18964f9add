"""Sampling cost per report cycle (collect + encode + write to outbox) versus the raw psutil floor.

Goal: at most 1.3x the CPU time of the raw psutil calls that gather the same data.
Also the cost with 100 custom metrics.
"""

from __future__ import annotations

from typing import Any, Dict

from benchmarks.common import not_measured
from benchmarks.ours import NotAvailable, make_sampler

GOAL = "collect + encode + outbox write at most 1.3x the raw psutil floor"
CUSTOM_GOAL = "100 custom metrics: cost grows linearly or better"


def run(quick: bool = False) -> Dict[str, Any]:
    try:
        make_sampler("json", "long")
    except NotAvailable as exc:
        return {
            "figures": [
                not_measured("report cycle CPU vs raw psutil floor", GOAL, str(exc), unit="s"),
                not_measured("report cycle with 100 custom metrics", CUSTOM_GOAL, str(exc), unit="s"),
            ]
        }
    raise NotImplementedError("wire the outbox write in once delivery lands")
