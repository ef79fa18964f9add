"""The ``metrics`` option of a collector with built-in metrics (``system`` and the security collectors): which of
the type's metrics to send, under which name.

A list picks some of them; a mapping ``built-in name: custom metric name`` renames them, so that two collectors
of one type (say, two ``file_integrity`` collectors with different paths) can each send their own metrics. Left
out (where the option is not required), every built-in metric of the type is sent under its own name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Tuple

from agent.catalog import METRIC_NAME, BuiltinMetric
from agent.schema import Checker, Node, did_you_mean, join


@dataclass(frozen=True)
class MetricNames(Node):
    """A list of built-in names of ``known``, or a mapping of built-in name to custom metric name."""

    known: Tuple[str, ...] = field(default_factory=tuple)
    label: str = "metric"  # "unknown <label> 'x'" in messages, e.g. "system metric"

    def type_name(self) -> str:
        return "list of metric names, or mapping of metric name to custom metric name"

    def check(self, value: Any, path: str, checker: Checker) -> Any:
        if value is None:
            return None
        pairs: List[Tuple[Any, Any, str]]
        if isinstance(value, list):
            pairs = [(item, item, join(path, i)) for i, item in enumerate(value)]
        elif isinstance(value, dict):
            pairs = [(key, target, join(path, key)) for key, target in value.items()]
        else:
            checker.problem(path, "expected a list of metric names or a mapping of metric name to custom metric name")
            return None
        out: Dict[str, str] = {}
        before = len(checker.problems)
        for builtin, target, sub in pairs:
            if not isinstance(builtin, str) or builtin not in self.known:
                hint = did_you_mean(str(builtin), list(self.known))
                checker.problem(sub, f"unknown {self.label} {builtin!r}{hint}; known: {', '.join(self.known)}")
                continue
            name = METRIC_NAME.check(target, sub, checker)
            if name is None:
                continue
            if name in out.values():
                checker.problem(sub, f"custom metric name {name!r} is used twice")
                continue
            out[builtin] = name
        if not out and len(checker.problems) == before:
            checker.problem(path, "select at least one metric")
        return out


def metric_names_option(metrics: Mapping[str, BuiltinMetric]) -> MetricNames:
    return MetricNames(
        doc="Which metrics to send and under which names: a list of the names below, or a mapping "
        "`built-in name: custom metric name`. Default: all of them under their own names.",
        known=tuple(metrics),
    )


def selected(options: Mapping[str, Any], metrics: Mapping[str, BuiltinMetric]) -> Dict[str, str]:
    """Built-in name -> the custom metric name it is sent as, for the collector's ``metrics`` option."""
    chosen = options.get("metrics")
    return dict(chosen) if chosen else {name: name for name in metrics}


def emits_of(options: Mapping[str, Any], metrics: Mapping[str, BuiltinMetric]) -> Dict[str, Any]:
    return {name: metrics[builtin].type for builtin, name in selected(options, metrics).items()}


def describes_of(options: Mapping[str, Any], metrics: Mapping[str, BuiltinMetric]) -> Dict[str, BuiltinMetric]:
    return {name: metrics[builtin] for builtin, name in selected(options, metrics).items()}
