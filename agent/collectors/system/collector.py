"""The ``system`` collector: built-in host metrics, each emitted under a configurable custom metric name.

``metrics`` is a list of built-in names (each emitted under its own name) or a
mapping ``built-in name: custom metric name``. A metric with nothing to read
this time (no temperature sensor) is left out; when every selected metric is
left out the collector reports "no data". Any other read error fails the whole
collector for this report: put metrics in separate ``system`` collectors (with
distinct ``name:``) to isolate them.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from agent.catalog import BUILTIN_METRICS, BuiltinMetric
from agent.collectors.contract import BuildContext, CollectorSpec, Emits
from agent.collectors.metric_names import MetricNames, describes_of, emits_of
from agent.collectors.system import cpu, host
from agent.collectors.system.source import PsutilSystem, SystemSource
from agent.errors import CollectorError, NoData
from agent.report.model import CustomValue, Sample
from agent.schema import REQUIRED, ListOf, Str

MIN_CPU_WINDOW = 0.25  # seconds; a first sample right after start waits this long for a meaningful cpu %


METRICS: Mapping[str, BuiltinMetric] = BUILTIN_METRICS["system"]


class SystemCollector:
    def __init__(
        self,
        name: str,
        *,
        metrics: Mapping[str, str],
        sensors: Tuple[str, ...] = ("*",),
        source: Optional[SystemSource] = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.name = name
        self._metrics = dict(metrics)
        self._sensors = sensors
        self._source: SystemSource = source or PsutilSystem()
        self._clock, self._monotonic, self._sleep = clock, monotonic, sleep
        self._lock = threading.Lock()
        self._cpu_prev: Optional[Tuple[float, Any, Any]] = None
        if "cpu_usage" in self._metrics or "cpu_core_usage" in self._metrics:
            self._cpu_prev = self._cpu_sample()

    def _cpu_sample(self) -> Tuple[float, Any, Any]:
        return (self._monotonic(), self._source.cpu_times(False), self._source.cpu_times(True))

    def collect(self) -> List[Sample]:
        with self._lock:
            return self._collect()

    def _collect(self) -> List[Sample]:
        values: Dict[str, Optional[CustomValue]] = {}
        if self._cpu_prev is not None:
            since = self._monotonic() - self._cpu_prev[0]
            if since < MIN_CPU_WINDOW:
                self._sleep(MIN_CPU_WINDOW - since)
            cur = self._cpu_sample()
            values["cpu_usage"] = cpu.busy_percent(self._cpu_prev[1], cur[1])
            values["cpu_core_usage"] = cpu.per_core_percent(self._cpu_prev[2], cur[2])
            self._cpu_prev = cur
        samples: List[Sample] = []
        for builtin, metric in self._metrics.items():
            try:
                value = values[builtin] if builtin in values else self._read(builtin)
            except (OSError, RuntimeError, AttributeError, ValueError) as exc:
                raise CollectorError(f"cannot read {builtin}: {type(exc).__name__}: {exc}") from exc
            if value is not None:
                samples.append(Sample(metric, value))
        if not samples:
            raise NoData(f"nothing to read for {', '.join(self._metrics)}")
        return samples

    def _read(self, builtin: str) -> Optional[CustomValue]:
        src = self._source
        if builtin == "load_average":
            return host.load_average(src.getloadavg())
        if builtin == "memory_used_percent":
            return round(float(src.virtual_memory().percent), 2)
        if builtin == "memory_available_bytes":
            return int(src.virtual_memory().available)
        if builtin == "swap_used_percent":
            return round(float(src.swap_memory().percent), 2)
        if builtin == "swap_used_bytes":
            return int(src.swap_memory().used)
        if builtin == "temperature":
            return host.max_temperature(src.sensors_temperatures(), self._sensors)
        if builtin == "uptime_seconds":
            return host.uptime_seconds(src.boot_time(), self._clock())
        if builtin == "process_count":
            return len(src.pids())
        if builtin == "logged_in_users":
            return host.user_names(src.users())
        if builtin == "agent_open_fds":
            return src.own_fds()
        raise ValueError(f"unknown metric {builtin!r}")  # unreachable: checked at load


def _emits(options: Mapping[str, Any]) -> Emits:
    return emits_of(options, METRICS)


def _describes(options: Mapping[str, Any]) -> Mapping[str, BuiltinMetric]:
    return describes_of(options, METRICS)


def _build(ctx: BuildContext, options: Mapping[str, Any]) -> SystemCollector:
    return SystemCollector(
        ctx.name, metrics=options["metrics"], sensors=tuple(options["temperature_sensors"])
    )


DOC = """\
Each metric in `metrics` is sent as a custom metric under its built-in name, or under the name a mapping
gives it (`metrics: {temperature: soc_temperature}`); declare it under `custom_metrics` with the type below.
When that definition leaves `unit` or `description` out, the agent fills them in from the table below
(`bootstrap` shows them). Percentages of CPU time are over the time since the previous sample; a first
sample right after start waits a moment so that it means something. Two `system` collectors (say, one
every report and one every hour) each need their own `name`.
"""

SAMPLE = """\
collectors:
  - type: system
    metrics: [cpu_usage, load_average, memory_used_percent, uptime_seconds, logged_in_users]
  - type: system
    name: soc_temperature
    interval: 15m                              # every third report at the default 5m
    metrics: {temperature: soc_temperature}    # built-in name -> the custom metric it is sent as
    temperature_sensors: [cpu_thermal]
custom_metrics:
  cpu_usage: number
  load_average: number-list
  memory_used_percent: number
  uptime_seconds: number
  logged_in_users: string-list
  soc_temperature: number
"""


SPEC = CollectorSpec(
    type="system",
    doc=DOC,
    sample=SAMPLE,
    summary="Host metrics: " + ", ".join(f"{k} ({v.type.value})" for k, v in METRICS.items()) + ".",
    options={
        "metrics": MetricNames(
            doc="Built-in metrics to emit: a list (emitted under their own names) "
            "or a mapping of built-in name to custom metric name.",
            default=REQUIRED,
            example=list(METRICS),
            known=tuple(METRICS),
            label="system metric",
        ),
        "temperature_sensors": ListOf(
            doc="Sensor chips (or chip/label) to read for `temperature`, by name or glob, e.g. cpu_thermal.",
            item=Str(),
            default=["*"],
        ),
    },
    build=_build,
    emits=_emits,
    describes=_describes,
    example={"metrics": list(METRICS)},
)
