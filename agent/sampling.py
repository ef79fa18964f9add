"""The seam between sampling and delivery: what the scheduler asks for once per report.

The scheduler only needs a :class:`SampleSource`. :class:`CollectorsSource` is a
plain stand-in that builds the configured collectors from the registry and calls
them one after another; the collectors' own Sampler (per-collector timeouts and
intervals) replaces it by providing the same three methods, wired in
:func:`build_source`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any, Dict, List, Mapping, Optional, Protocol, Sequence

from agent.collectors.base import Collector, Sample, close_collector
from agent.collectors.registry import BuildContext, Registry, default_registry
from agent.config.model import Config
from agent.errors import CollectorError, NoData


class SampleSource(Protocol):
    def sample(self) -> Sequence[Sample]:
        """One round of samples for one report. Must not raise for a failing collector."""
        ...

    def stats(self) -> Mapping[str, Mapping[str, Any]]:
        """Per collector: ``ok``, ``failed``, ``no_data`` counts, ``last_duration`` (s), ``last_error``."""
        ...

    def close(self) -> None: ...


class CollectorsSource:
    """Calls each configured collector in turn, counting successes, failures and durations."""

    def __init__(self, collectors: Sequence[Collector], logger: logging.Logger) -> None:
        self.collectors = list(collectors)
        self.log = logger
        self._stats: Dict[str, Dict[str, Any]] = {
            c.name: {"ok": 0, "failed": 0, "no_data": 0, "last_duration": None, "last_error": None}
            for c in self.collectors
        }
        self._failing: set[str] = set()

    def sample(self) -> List[Sample]:
        out: List[Sample] = []
        for collector in self.collectors:
            stats = self._stats[collector.name]
            started = time.monotonic()
            try:
                out.extend(collector.collect())
                stats["ok"] += 1
                stats["last_error"] = None
                if collector.name in self._failing:
                    self._failing.discard(collector.name)
                    self.log.info("Collector %r works again", collector.name)
            except NoData:
                stats["no_data"] += 1
            except Exception as exc:  # a collector's failure costs only its own metrics
                stats["failed"] += 1
                stats["last_error"] = str(exc) if isinstance(exc, CollectorError) else f"{type(exc).__name__}: {exc}"
                if collector.name not in self._failing:
                    self._failing.add(collector.name)
                    self.log.warning(
                        "Collector %r failed after %.3f s: %s", collector.name, time.monotonic() - started,
                        stats["last_error"],
                    )
            stats["last_duration"] = round(time.monotonic() - started, 6)
        return out

    def stats(self) -> Mapping[str, Mapping[str, Any]]:
        return {name: dict(values) for name, values in self._stats.items()}

    def close(self) -> None:
        for collector in self.collectors:
            try:
                close_collector(collector)
            except Exception as exc:
                self.log.warning("Closing collector %r failed: %s", collector.name, exc)


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


def build_source(config: Config, logger: logging.Logger, registry: Optional[Registry] = None) -> SampleSource:
    """The sample source for ``config``: the collectors' Sampler when present, else :class:`CollectorsSource`."""
    try:
        from agent.collectors.build import build_collectors  # type: ignore[import-not-found,unused-ignore]
        from agent.collectors.sampler import Sampler  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return _plain_source(config, logger, registry)
    jobs = build_collectors(config, registry, logger)
    declared = {name: m.type for name, m in config.custom_metrics.items()}
    return SamplerSource(Sampler(jobs, config.report.interval, declared, logger=logger))


def _plain_source(config: Config, logger: logging.Logger, registry: Optional[Registry]) -> SampleSource:
    registry = registry or default_registry()
    collectors: List[Collector] = []
    types = {name: m.type for name, m in config.custom_metrics.items()}
    for entry in config.collectors:
        spec = registry.get(entry.type)
        if spec is None:  # load_config already refused unknown types
            raise CollectorError(f"collector type {entry.type!r} is not available")
        context = BuildContext(
            name=entry.name,
            state_dir=config.state_dir,
            timeout=entry.timeout,
            report_interval=config.report.interval,
            max_list_items=config.report.max_list_items,
            logger=logger.getChild(entry.name),
            custom_metric_types=types,
        )
        collector = spec.build(context, entry.options)
        if getattr(collector, "name", None) != entry.name:
            with contextlib.suppress(AttributeError):
                collector.name = entry.name
        collectors.append(collector)
    return CollectorsSource(collectors, logger)
