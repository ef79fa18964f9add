"""Which behaviors of a config can never be judged: nothing the agent sends carries their metric.

A behavior is judged on its metric's value in each round (:mod:`agent.behaviors.evaluate`). A declared custom
metric that no collector emits, or a device-side metric whose report metric no collector emits
(``aws:num-listening-tcp-ports`` without a ``listening_ports`` collector), never has one: the behavior stays
"no data" for as long as the agent runs, and never alarms.

This is a warning, not a config error: Device Defender accepts such a behavior (in the cloud too it simply never
alarms), and a profile pulled from the cloud serves gateways that collect different metrics. ``check`` prints
each one; ``run`` should log each once when it starts.
"""

from __future__ import annotations

from typing import Collection, FrozenSet, Iterable, List, Mapping, Optional, Tuple

from agent.catalog import HEALTH_METRICS, STANDARD_CLOUD_NAMES
from agent.config.model import Config, HealthMetrics
from agent.schema import join

NEVER_JUDGED = 'so this behavior can never be judged (it would stay "no data")'

# A device-side metric -> the report metric it is derived from (aws:num-listening-tcp-ports -> listening_tcp_ports).
_REPORT_METRIC: Mapping[str, str] = {cloud: name for name, clouds in STANDARD_CLOUD_NAMES.items() for cloud in clouds}


def cloud_names(sample_names: Iterable[str]) -> FrozenSet[str]:
    """The names behaviors use for what collectors emit: a standard metric's device-side metrics
    (``listening_tcp_ports`` -> ``aws:listening-tcp-ports`` and ``aws:num-listening-tcp-ports``), a custom
    metric's own name."""
    return frozenset(cloud for name in sample_names for cloud in STANDARD_CLOUD_NAMES.get(name, (name,)))


def unjudgeable_behaviors(
    config: Config, emitted_cloud_names: Collection[str], sources: Optional[Mapping[str, str]] = None
) -> List[Tuple[str, str]]:
    """``(YAML path, message)`` for each behavior of ``config`` whose metric is in no round.

    ``emitted_cloud_names`` is what the configured collectors emit, as :func:`cloud_names` names it; the
    agent's health metrics are added here when ``health_metrics: custom_metrics`` sends them. ``sources``
    (optional) maps a report metric (``listening_tcp_ports``) to the collector type that emits it, for the hint.
    """
    emitted = set(emitted_cloud_names)
    if config.health_metrics is HealthMetrics.CUSTOM_METRICS:
        emitted.update(HEALTH_METRICS)
    return [
        (join(join("behaviors", index), "metric"), _why(behavior.metric, sources or {}))
        for index, behavior in enumerate(config.behaviors)
        if behavior.metric not in emitted
    ]


def _why(metric: str, sources: Mapping[str, str]) -> str:
    report = _REPORT_METRIC.get(metric)
    if report is not None:
        hint = f"; the {sources[report]} collector emits it by default" if report in sources else ""
        return f"{metric} is derived from {report}, which no collector in `collectors:` emits, {NEVER_JUDGED}{hint}"
    if metric in HEALTH_METRICS:
        return (f"{metric!r} is the agent's own health, sent only with `health_metrics: custom_metrics`, "
                f"{NEVER_JUDGED}")
    return (f"no collector in `collectors:` emits custom metric {metric!r}, {NEVER_JUDGED}; add a collector "
            "that emits it, or remove the behavior")
