"""Network byte/packet deltas (``network_stats``), summed over the selected interfaces."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable, List, Mapping, Optional

from agent.collectors.contract import BuildContext, CollectorSpec, Emits
from agent.collectors.standard.counters import ProcCounters
from agent.collectors.standard.delta import DeltaEngine, Snapshot, StateFile, filter_from
from agent.errors import CollectorError, NoData
from agent.report.model import Sample, SampleKind
from agent.schema import Duration, ListOf, Str

METRIC = "network_stats"
SPAN_FACTOR = 1.5  # a delta may cover up to 1.5 sampling intervals (jitter, a slow round), not more


class NetworkStatsCollector:
    """Each ``collect()`` returns the delta since the previous one (or since the last run's, from state)."""

    def __init__(
        self,
        name: str,
        engine_factory: Callable[[Snapshot], DeltaEngine],
        source: ProcCounters,
        logger: logging.Logger,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self._source = source
        self._logger = logger
        self._clock = clock
        self._save_problem: Optional[str] = None
        self.engine = engine_factory(self._snapshot())
        if self.engine.load_problem:
            logger.warning("%s; the first delta is measured from the agent's start", self.engine.load_problem)

    def _snapshot(self) -> Snapshot:
        try:
            return Snapshot(self._source.boot_id(), self._source.counters())
        except (OSError, ValueError) as exc:
            raise CollectorError(f"cannot read interface counters: {exc}") from exc

    def collect(self) -> List[Sample]:
        delta, problem = self.engine.advance(self._snapshot(), self._clock())
        if problem != self._save_problem:  # say it once, and once when it clears
            if problem:
                self._logger.warning("%s; deltas stay correct until the agent restarts", problem)
            else:
                self._logger.info("Counter state saved again to %s", self.engine.state_path)
            self._save_problem = problem
        if delta.stats is None:
            raise NoData(f"{delta.skipped}; skipping this interval's network_stats")
        return [Sample(METRIC, delta.stats, SampleKind.STANDARD)]


def state_path(state_dir: Path, collector_name: str) -> Path:
    return state_dir / f"network-counters.{collector_name}.json"


def _emits(options: Mapping[str, Any]) -> Emits:
    return {METRIC: None}


def _build(ctx: BuildContext, options: Mapping[str, Any]) -> NetworkStatsCollector:
    wanted = filter_from(options["interfaces"], options["exclude_interfaces"])
    state = StateFile(state_path(ctx.state_dir, ctx.name))
    persist = ctx.persist_state
    source = ProcCounters(options["proc_root"], options["sys_root"])
    max_span = options["max_span"] if options["max_span"] is not None else SPAN_FACTOR * ctx.sample_interval
    return NetworkStatsCollector(
        ctx.name,
        lambda baseline: DeltaEngine(state, wanted, baseline, persist=persist, max_span=max_span or None),
        source,
        ctx.logger,
    )


DOC = """\
The sum over the selected interfaces of bytes and packets in and out since the previous sample. The last
counters are kept in `state_dir/network-counters.<name>.json` (written atomically), so the first report after
an agent restart carries a true delta. An interval is skipped (reported as "no data", logged once) after a
reboot (the boot id changed), when a selected interface disappeared or was re-created, when a counter went
backwards (reset or 32-bit wrap), or when the previous sample is older than `max_span` (the agent was stopped,
or rounds were missed), because Detect would count a whole outage's traffic as one interval's; the log line
says how many bytes and packets were left out. A delta is never negative nor a raw total. Without any state
(the first run) the delta counts from the agent's start.
"""

SAMPLE = """\
collectors:
  - type: network_stats
    exclude_interfaces: [lo, "docker*", "veth*"]   # the uplinks, not the container bridges
"""


SPEC = CollectorSpec(
    type="network_stats",
    doc=DOC,
    sample=SAMPLE,
    summary="Bytes and packets in and out since the previous report, summed over the selected interfaces "
    "(standard metric); survives agent restarts, skips an interval after a reboot, reset or wrap.",
    options={
        "interfaces": ListOf(doc="Interfaces to count, by name or glob (e.g. eth*, wlan0).", default=["*"]),
        "exclude_interfaces": ListOf(
            doc="Interfaces left out, by name or glob; loopback is left out by default.", default=["lo"]
        ),
        "proc_root": Str(doc="Where procfs is mounted (for containers).", default="/proc"),
        "sys_root": Str(doc="Where sysfs is mounted (for containers).", default="/sys"),
        "max_span": Duration(
            doc="Longest time one delta may cover; a longer one (after the agent was stopped, or a missed "
            "round) is skipped and what it held is logged, so no report shows an outage's traffic as one "
            "interval's. Default: 1.5 times the collector's sampling interval; 0 sends every delta.",
            min=0,
        ),
    },
    build=_build,
    emits=_emits,
    example={"exclude_interfaces": ["lo", "docker*", "veth*"]},
)
