"""The seam between sampling and delivery: what the scheduler asks for once per report.

The scheduler only needs a :class:`SampleSource`. A round is asynchronous, because the loop must
never wait for a collector: ``deadline = source.begin(wake)`` starts it and returns at once;
``wake()`` is called (from another thread) once every collector has ended; once ``source.ready()``
or the clock has passed ``deadline``, ``source.finish()`` gives the round's samples. In the service
the source is the collectors' :class:`~agent.collectors.sampler.Sampler` (per-collector timeouts
and intervals), built from the config by :func:`build_source`. Tests inject their own source, often
with only ``sample()``, ``stats()`` and ``close()`` (a :class:`SyncSource`): :func:`rounds_of` gives
it the same rounds (:class:`SyncRounds`).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, FrozenSet, List, Mapping, Optional, Protocol, Sequence, Union

from agent.catalog import STANDARD_CLOUD_NAMES
from agent.collectors.build import build_collectors
from agent.collectors.registry import Registry
from agent.collectors.sampler import Sampler
from agent.config.model import Config
from agent.report.model import NetworkStats, Sample
from agent.sinks.health import CollectorHealth


class SyncSource(Protocol):
    """A source that samples a round synchronously (what a test's fake source provides)."""

    def sample(self) -> Sequence[Sample]:
        """One round of samples for one report, waiting for it. Must not raise for a failing collector."""
        ...

    def stats(self) -> Mapping[str, Mapping[str, Any]]:
        """Per collector: ``ok``, ``failed``, ``no_data`` counts, ``last_duration`` (s), ``last_error``."""
        ...

    def close(self) -> None:
        """Release everything; must not wait for a hung collector."""
        ...


class SampleSource(SyncSource, Protocol):
    """A source whose rounds the loop drives without waiting: begin, then (woken, or at the deadline) finish."""

    def begin(self, wake: Callable[[], None]) -> float:
        """Start a round and return at once: the monotonic time by which it gives up on its stragglers.

        ``wake()`` is called at most once for the round, from any thread (or from ``begin`` itself), when
        every collector it started has ended; it may come after ``finish()`` and must then be harmless."""
        ...

    def ready(self) -> bool:
        """The round has nothing left to wait for: ``finish()`` now loses nothing."""
        ...

    def finish(self) -> Sequence[Sample]:
        """The round's good samples, without waiting (a collector still going counts as timed out).
        Must not raise for a failing collector. Call it before the next ``begin``."""
        ...


class SyncRounds:
    """The rounds of a :class:`SyncSource`: ``begin`` runs ``sample()`` at once, calls ``wake`` and returns
    the current time of ``clock`` (the round may end at once); ``ready()`` is always True; ``finish()``
    gives what that ``sample()`` returned. ``begin`` raises what ``sample()`` raises."""

    def __init__(self, source: SyncSource, clock: Callable[[], float] = time.monotonic) -> None:
        self.inner = source
        self._clock = clock
        self._samples: Sequence[Sample] = ()

    def begin(self, wake: Callable[[], None]) -> float:
        self._samples = self.inner.sample()
        wake()
        return self._clock()

    def ready(self) -> bool:
        return True

    def finish(self) -> Sequence[Sample]:
        samples, self._samples = self._samples, ()
        return samples

    def sample(self) -> Sequence[Sample]:
        return self.inner.sample()

    def stats(self) -> Mapping[str, Mapping[str, Any]]:
        return self.inner.stats()

    def close(self) -> None:
        self.inner.close()

    def not_due_metrics(self) -> FrozenSet[str]:
        """The wrapped source's (see :func:`not_due_cloud_names`), or none."""
        probe = getattr(self.inner, "not_due_metrics", None)
        return frozenset(probe()) if callable(probe) else frozenset()


def rounds_of(source: Union[SampleSource, SyncSource], clock: Callable[[], float] = time.monotonic
              ) -> SampleSource:
    """``source`` itself when it runs rounds (``begin``, ``ready``, ``finish``), else a :class:`SyncRounds`
    of it whose ``begin`` returns the time of ``clock`` (pass the loop's own)."""
    if all(callable(getattr(source, name, None)) for name in ("begin", "ready", "finish")):
        return source  # type: ignore[return-value]  # it has the rounds: checked just above
    return SyncRounds(source, clock)


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


def build_source(config: Config, logger: logging.Logger, registry: Optional[Registry] = None) -> Sampler:
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

