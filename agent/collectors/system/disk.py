"""The ``disk`` collector: one number metric per configured mount point."""

from __future__ import annotations

from typing import Any, List, Mapping, Optional

from agent.catalog import BUILTIN_METRICS, METRIC_NAME, BuiltinMetric
from agent.collectors.contract import BuildContext, CollectorSpec, Emits
from agent.collectors.system.source import PsutilSystem, SystemSource
from agent.errors import CollectorError
from agent.report.model import Sample
from agent.schema import REQUIRED, Enum, MapOf, Str


def usage_value(usage: Any, value: str) -> float:
    """``used_percent`` as the ``df`` command shows it (used / (used + free), root reserve excluded)."""
    if value == "used_bytes":
        return int(usage.used)
    if value == "free_bytes":
        return int(usage.free)
    return round(float(usage.percent), 2)


class DiskCollector:
    def __init__(
        self, name: str, mounts: Mapping[str, str], value: str, source: Optional[SystemSource] = None
    ) -> None:
        self.name = name
        self._mounts = dict(mounts)
        self._value = value
        self._source: SystemSource = source or PsutilSystem()

    def collect(self) -> List[Sample]:
        samples = []
        for path, metric in self._mounts.items():
            try:
                usage = self._source.disk_usage(path)
            except OSError as exc:
                raise CollectorError(f"cannot stat the filesystem at {path}: {exc.strerror or exc}") from exc
            samples.append(Sample(metric, usage_value(usage, self._value)))
        return samples


def _emits(options: Mapping[str, Any]) -> Emits:
    return {metric: METRICS[options["value"]].type for metric in options["mounts"].values()}


def _describes(options: Mapping[str, Any]) -> Mapping[str, BuiltinMetric]:
    return {metric: METRICS[options["value"]] for metric in options["mounts"].values()}


METRICS: Mapping[str, BuiltinMetric] = BUILTIN_METRICS["disk"]


def _build(ctx: BuildContext, options: Mapping[str, Any]) -> DiskCollector:
    return DiskCollector(ctx.name, mounts=options["mounts"], value=options["value"])


DOC = """\
One `number` custom metric per mount point, named in `mounts`; `value` says which figure all of them carry
(space as `df` shows it: the root reserve is not counted as free for an unprivileged user). For two figures
of one mount, use two `disk` collectors, each with its own `name`. A mount point that cannot be read fails
the collector for that round, naming the path.
"""

SAMPLE = """\
collectors:
  - type: disk
    mounts:
      /: disk_root_used_percent
      /data: disk_data_used_percent
  - type: disk
    name: disk_free
    value: free_bytes
    mounts:
      /data: disk_data_free_bytes
custom_metrics:
  disk_root_used_percent: number
  disk_data_used_percent: number
  disk_data_free_bytes: number
"""


SPEC = CollectorSpec(
    type="disk",
    doc=DOC,
    sample=SAMPLE,
    summary="Disk usage per mount point, one number metric each (used percent by default).",
    options={
        "mounts": MapOf(
            doc="Mount point (absolute path) -> custom metric name.",
            key=Str(pattern=r"/.*", pattern_hint="must be an absolute path"),
            value=METRIC_NAME,
            default=REQUIRED,
            example={"/": "disk_root_used_percent"},
        ),
        "value": Enum(
            doc="What to report for each mount.",
            default="used_percent",
            choices=tuple(METRICS),
        ),
    },
    build=_build,
    emits=_emits,
    describes=_describes,
    example={"mounts": {"/": "disk_root_used_percent"}},
)
