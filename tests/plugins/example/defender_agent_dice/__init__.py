"""An example defender-agent collector plugin.

It rolls ``count`` dice with ``sides`` sides and emits their total as a
``number`` metric and the rolls as a ``number-list`` metric. It uses only
``agent.plugin_api``.
"""

from __future__ import annotations

import random
from typing import Any, List, Mapping

from agent.plugin_api import (
    REQUIRED,
    BuildContext,
    CollectorError,
    CollectorSpec,
    Emits,
    Int,
    MetricType,
    Sample,
    Str,
)


class DiceCollector:
    def __init__(
        self, name: str, *, sides: int, count: int, total_metric: str, rolls_metric: str, seed: int
    ) -> None:
        self.name = name
        self._sides = sides
        self._count = count
        self._total = total_metric
        self._rolls = rolls_metric
        self._random = random.Random(seed)
        self.closed = False

    def collect(self) -> List[Sample]:
        if self.closed:
            raise CollectorError("collect() after close()")
        rolls = tuple(self._random.randint(1, self._sides) for _ in range(self._count))
        return [Sample(self._total, sum(rolls)), Sample(self._rolls, rolls)]

    def close(self) -> None:
        self.closed = True


def _emits(options: Mapping[str, Any]) -> Emits:
    return {options["total_metric"]: MetricType.NUMBER, options["rolls_metric"]: MetricType.NUMBER_LIST}


def _build(ctx: BuildContext, options: Mapping[str, Any]) -> DiceCollector:
    return DiceCollector(
        ctx.name,
        sides=options["sides"],
        count=options["count"],
        total_metric=options["total_metric"],
        rolls_metric=options["rolls_metric"],
        seed=options["seed"],
    )


def spec() -> CollectorSpec:
    return CollectorSpec(
        type="dice",
        summary="Rolls dice: the total (number) and each roll (number-list).",
        options={
            "sides": Int(doc="Sides per die.", default=6, min=2, max=1000),
            "count": Int(doc="Dice per roll.", default=2, min=1, max=100),
            "total_metric": Str(doc="Metric for the total.", default=REQUIRED),
            "rolls_metric": Str(doc="Metric for the rolls.", default=REQUIRED),
            "seed": Int(doc="Random seed (for reproducible tests).", default=0),
        },
        build=_build,
        emits=_emits,
        example={"total_metric": "dice_total", "rolls_metric": "dice_rolls"},
    )
