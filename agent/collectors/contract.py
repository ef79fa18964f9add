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
from typing import Any, Callable, List, Mapping, Optional, Protocol, Tuple, runtime_checkable

from agent.catalog import BuiltinMetric, MetricType
from agent.collectors.readcache import ReadCache
from agent.config.model import CustomMetricConfig
from agent.report.model import Sample, SampleKind, standard_value_class
from agent.report.rules import check_value, normalize_value
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
    # docs/COLLECTORS.md (rendered by agent.docs, never read at run time): what the type measures and how it
    # behaves, in Markdown, and a config fragment (`collectors:` plus the `custom_metrics:` it needs) that a
    # test loads through the config loader.
    doc: str = ""
    sample: str = ""
    # The files, directories and sources (``journal``) the collector reads with these options, so that `check`
    # can say in one line per collector when the current user cannot read one (see
    # :mod:`agent.collectors.access`). A path is an absolute filesystem path; ``"journal"`` names the systemd
    # journal (readable by root and the ``systemd-journal`` group). None: nothing worth checking.
    reads: Optional[Callable[[Mapping[str, Any]], Tuple[str, ...]]] = None


def check_result(emits: Mapping[str, Optional[MetricType]], result: Any,
                 custom_metrics: Mapping[str, CustomMetricConfig]) -> Tuple[List[Sample], Optional[str]]:
    """What a collector's ``collect()`` returned, checked: (the samples to keep, why it failed this round or None).

    A result that breaks the collector contract keeps nothing; a custom value that breaks
    the service's rules costs only its own metric.
    """
    if not isinstance(result, (list, tuple)):
        return [], f"collect() returned {type(result).__name__}, expected a list of Sample"
    out: List[Sample] = []
    bad_values: List[str] = []
    seen = set()
    for item in result:
        if not isinstance(item, Sample):
            return [], f"collect() returned a {type(item).__name__} in its list, expected Sample"
        if item.name in seen:
            return [], f"sample {item.name!r} returned twice"
        seen.add(item.name)
        if item.name not in emits:
            return (
                [],
                f"sample {item.name!r} is not one of the metrics it declared ({', '.join(emits)})",
            )
        declared = emits[item.name]
        if declared is None:
            expected = standard_value_class(item.name)
            if (
                item.kind is not SampleKind.STANDARD
                or expected is None
                or not isinstance(item.value, expected)
            ):
                want = expected.__name__ if expected else "a standard value"
                return [], f"sample {item.name!r} is a {type(item.value).__name__}, expected {want}"
            out.append(item)
            continue
        if item.kind is not SampleKind.CUSTOM:
            return [], f"sample {item.name!r} is declared as a custom metric but is not a custom sample"
        definition = custom_metrics.get(item.name)
        mtype = definition.type if definition is not None else declared
        value = normalize_value(item.value, mtype)
        problem = check_value(
            value, mtype, allow_any_characters=definition is not None and definition.allow_any_characters
        )
        if problem is not None:
            bad_values.append(f"sample {item.name!r} ({mtype.value}) left out: {problem}")
            continue
        out.append(item if value is item.value else Sample(item.name, value, item.kind))
    return out, "; ".join(bad_values) or None
