"""The seam between sampling and delivery: what the scheduler asks for once per report.

The scheduler only needs a :class:`SampleSource` (three methods). In the service
it is the collectors' ``Sampler`` (per-collector timeouts and intervals) behind
:class:`SamplerSource`; tests inject their own source.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Optional, Protocol, Sequence

from agent.collectors.base import Sample
from agent.collectors.registry import Registry
from agent.config.model import Config
from agent.report.model import NetworkStats


class SampleSource(Protocol):
    def sample(self) -> Sequence[Sample]:
        """One round of samples for one report. Must not raise for a failing collector."""
        ...

    def stats(self) -> Mapping[str, Mapping[str, Any]]:
        """Per collector: ``ok``, ``failed``, ``no_data`` counts, ``last_duration`` (s), ``last_error``."""
        ...

    def close(self) -> None: ...


class SamplerSource:
    """Adapts the collectors' ``Sampler`` (agent.collectors.sampler) to :class:`SampleSource`."""

    def __init__(self, sampler: Any) -> None:
        self.sampler = sampler

    def sample(self) -> Sequence[Sample]:
        return tuple(self.sampler.sample_all().samples)

    def stats(self) -> Mapping[str, Mapping[str, Any]]:
        return {
            name: {"ok": s.successes, "failed": s.failures, "no_data": s.no_data,
                   "last_duration": s.last_duration, "last_error": s.last_error}
            for name, s in self.sampler.stats().items()
        }

    def close(self) -> None:
        self.sampler.close()


def network_stats(samples: Sequence[Sample]) -> Optional[NetworkStats]:
    """The round's network deltas (kept next to a stored report so that ``backlog: newest`` can fold them)."""
    for sample in samples:
        if sample.name == "network_stats" and isinstance(sample.value, NetworkStats):
            return sample.value
    return None


def build_source(config: Config, logger: logging.Logger, registry: Optional[Registry] = None) -> SampleSource:
    """The sample source for ``config``: the configured collectors, run by the collectors' Sampler."""
    from agent.collectors.build import build_collectors
    from agent.collectors.sampler import Sampler

    jobs = build_collectors(config, registry, logger)
    declared = {name: m.type for name, m in config.custom_metrics.items()}
    return SamplerSource(Sampler(jobs, config.report.interval, declared, logger=logger))
