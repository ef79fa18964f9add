"""The collector contract: what a collector is, what it may know when built, how its type is described.

Plugin authors depend on this module (through :mod:`agent.plugin_api`), nothing else of the
agent's collectors. A collector is built once from its validated options (errors there are
config errors); ``collect()`` only reads and converts, returns a list of
:class:`~agent.report.model.Sample`, raises :class:`~agent.errors.CollectorError` (or
:class:`~agent.errors.NoData`) and never logs its own failures: the sampler does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, List, Mapping, Optional, Protocol, runtime_checkable

from agent.catalog import BuiltinMetric, MetricType
from agent.collectors.readcache import ReadCache
from agent.report.model import Sample
from agent.schema import Node

# name -> declared custom metric type, or None for a standard metric (`metrics` block)
Emits = Mapping[str, Optional[MetricType]]


@runtime_checkable
class Collector(Protocol):
    """What every collector, built-in or third-party, looks like."""

    name: str

    def collect(self) -> List[Sample]: ...


def close_collector(collector: Collector) -> None:
    """Call ``close()`` when the collector has one."""
    close = getattr(collector, "close", None)
    if callable(close):
        close()


@dataclass(frozen=True)
class BuildContext:
    """What a collector may know about the agent when it is built."""

    name: str
    state_dir: Path
    timeout: float
    report_interval: float
    max_list_items: int
    logger: logging.Logger
    custom_metric_types: Mapping[str, MetricType] = field(default_factory=dict)
    reads: ReadCache = field(default_factory=ReadCache)  # reads shared within one sampling round
    persist_state: bool = True  # False: read state files but never write them (one-off runs)
    sample_interval: float = 0.0  # how often this collector runs (report_interval when 0)

    def __post_init__(self) -> None:
        if not self.sample_interval:
            object.__setattr__(self, "sample_interval", self.report_interval)


@dataclass(frozen=True)
class CollectorSpec:
    type: str
    summary: str
    options: Mapping[str, Node]
    build: Callable[[BuildContext, Mapping[str, Any]], Collector]
    emits: Callable[[Mapping[str, Any]], Emits]
    example: Optional[Mapping[str, Any]] = None  # options shown in the example config
    # False: the example needs a program or file of the operator's, so it is shown commented out
    example_enabled: bool = True
    origin: str = "built-in"  # "entry point NAME from DIST VERSION" for plugins
    # custom metric name -> what the collector computes there (unit, description), for the docs and bootstrap
    describes: Optional[Callable[[Mapping[str, Any]], Mapping[str, BuiltinMetric]]] = None
