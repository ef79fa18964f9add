"""The seam between sampling and delivery: what the scheduler asks for once per report.

The scheduler only needs a :class:`SampleSource` (three methods). In the service it is
the collectors' :class:`~agent.collectors.sampler.Sampler` (per-collector timeouts and
intervals), built from the config by :func:`build_source`; tests inject their own source.
"""

from __future__ import annotations

import logging
from typing import Any, FrozenSet, List, Mapping, Optional, Protocol, Sequence

from agent.catalog import STANDARD_CLOUD_NAMES
from agent.collectors.build import build_collectors
from agent.collectors.registry import Registry
from agent.collectors.sampler import Sampler
from agent.config.model import Config
from agent.report.model import NetworkStats, Sample
from agent.sinks.health import CollectorHealth


class SampleSource(Protocol):
    def sample(self) -> Sequence[Sample]:
        """One round of samples for one report. Must not raise for a failing collector."""
        ...

    def stats(self) -> Mapping[str, Mapping[str, Any]]:
        """Per collector: ``ok``, ``failed``, ``no_data`` counts, ``last_duration`` (s), ``last_error``."""
        ...

    def close(self) -> None: ...


def not_due_cloud_names(source: object) -> FrozenSet[str]:
    """The cloud names of the metrics the source's last round left out by schedule (a collector's longer
    ``interval``), so that a behavior on one is not judged "stopped arriving". A source without
    ``not_due_metrics()`` (a test's) runs everything every round."""
    probe = getattr(source, "not_due_metrics", None)
    names = probe() if callable(probe) else frozenset()
    return frozenset(cloud for name in names for cloud in STANDARD_CLOUD_NAMES.get(name, (name,)))


def network_stats(samples: Sequence[Sample]) -> Optional[NetworkStats]:
    """The round's network deltas (kept next to a stored report so that ``backlog: newest`` can fold them)."""
    for sample in samples:
        if sample.name == "network_stats" and isinstance(sample.value, NetworkStats):
            return sample.value
    return None


def build_source(config: Config, logger: logging.Logger, registry: Optional[Registry] = None) -> SampleSource:
    """The sample source for ``config``: the configured collectors, run by the collectors' Sampler."""
    jobs = build_collectors(config, registry, logger)
    return Sampler(jobs, config.report.interval, config.custom_metrics, logger=logger)


def health_samples(collectors: Sequence[CollectorHealth], pending: int,
                   since_accepted: Optional[float]) -> List[Sample]:
    """The agent's health as custom metrics (``health_metrics: custom_metrics``; names in agent.catalog.HEALTH_METRICS)."""
    failing = tuple(c.name for c in collectors if not c.ok)
    samples = [
        Sample("agent_collectors_failing", len(failing)),
        Sample("agent_failing_collectors", failing),
        Sample("agent_outbox_pending", pending),
    ]
    if since_accepted is not None:
        samples.append(Sample("agent_seconds_since_accepted", round(since_accepted, 1)))
    return samples
