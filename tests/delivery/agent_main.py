"""Run the agent's CLI with a test-only collector type ``test_counter`` registered (network deltas of 100 B)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, List, Mapping

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from agent.collectors import builtin
from agent.collectors.contract import BuildContext, CollectorSpec
from agent.report.model import NetworkStats, Sample, SampleKind


class Counter:
    def __init__(self, name: str) -> None:
        self.name = name

    def collect(self) -> List[Sample]:
        return [Sample("network_stats", NetworkStats(100, 200, 1, 2), SampleKind.STANDARD)]


def _build(context: BuildContext, options: Mapping[str, Any]) -> Counter:
    return Counter(context.name)


SPEC = CollectorSpec(type="test_counter", summary="test only", options={}, build=_build,
                     emits=lambda options: {"network_stats": None})
_original = builtin.builtin_specs
builtin.builtin_specs = lambda: [*_original(), SPEC]

from agent.cli import main  # noqa: E402

main()
