"""defender-agent's own sampling path, as the worker and the benchmarks drive it.

``make_sampler(fmt, key_names, profile, custom_metrics)`` returns a function that
runs one report cycle: the real :class:`Sampler` over collectors built by
``build_collectors`` from a parsed config (state persisted, as the daemon does),
then ``ReportBuilder.build`` (checks and encoding), then the outbox write when
delivery is on this branch (see :func:`outbox_writer`).

Profiles (what is collected; the raw psutil floor in benchmarks/worker.py makes
exactly the calls each profile's collectors make):

- ``peer``: listening_ports, tcp_connections, network_stats and a system
  collector with ``cpu_usage`` only: the data the AWS sample agent reports.
- ``full``: the collectors of config/agent.example.yaml (standard + every system
  metric + disk usage of /).

``custom_metrics=N`` adds N ``file`` collectors, each reading one small number
file (one custom metric each), for the custom-metric scale figure.
"""

from __future__ import annotations

import atexit
import importlib.util
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

AGENT_YAML = """\
thing_name: bench-gateway
mqtt:
  endpoint: 127.0.0.1
  cert: /nonexistent/device.pem
  key: /nonexistent/device.key
  ca: /nonexistent/ca.pem
report:
  format: {fmt}
  key_names: {key_names}
  interval: 1s
  max_list_items: 5000
state_dir: {state_dir}
custom_metrics:
{custom}
collectors:
{collectors}
"""

STANDARD = """\
  - type: listening_ports
  - type: tcp_connections
  - type: network_stats
"""

SYSTEM_METRICS = (
    "cpu_usage",
    "cpu_core_usage",
    "load_average",
    "memory_used_percent",
    "memory_available_bytes",
    "swap_used_percent",
    "swap_used_bytes",
    "temperature",
    "uptime_seconds",
    "process_count",
    "logged_in_users",
    "agent_open_fds",
)
SYSTEM_TYPES = {
    "cpu_core_usage": "number-list",
    "load_average": "number-list",
    "logged_in_users": "string-list",
}

PROFILES = ("peer", "full")


class NotAvailable(RuntimeError):
    """The agent on this branch does not have the pieces this benchmark needs yet."""


def config_text(fmt: str, key_names: str, state_dir: Path, profile: str = "peer", custom_metrics: int = 0) -> str:
    """The YAML of a benchmark config; ``custom_metrics`` file collectors read files under state_dir/files."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}")
    metrics = ("cpu_usage",) if profile == "peer" else SYSTEM_METRICS
    collectors = STANDARD + "  - type: system\n    metrics: [" + ", ".join(metrics) + "]\n"
    custom = [f"  {m}: {{type: {SYSTEM_TYPES.get(m, 'number')}}}" for m in metrics]
    if profile == "full":
        collectors += "  - type: disk\n    mounts: {/: disk_root_used_percent}\n"
        custom.append("  disk_root_used_percent: {type: number}")
    files = state_dir / "files"
    for index in range(custom_metrics):
        name = f"file_metric_{index:03d}"
        path = files / f"{name}.txt"
        collectors += f"  - type: file\n    name: {name}\n    path: {path}\n    metric: {name}\n    metric_type: number\n"
        custom.append(f"  {name}: {{type: number}}")
    return AGENT_YAML.format(
        fmt=fmt,
        key_names=key_names,
        state_dir=state_dir,
        custom="\n".join(custom),
        collectors=collectors.rstrip("\n"),
    )


def write_custom_files(state_dir: Path, count: int) -> List[Path]:
    files = state_dir / "files"
    files.mkdir(parents=True, exist_ok=True)
    out = []
    for index in range(count):
        path = files / f"file_metric_{index:03d}.txt"
        path.write_text(f"{index * 1.5:.1f}\n", encoding="ascii")
        out.append(path)
    return out


class OutboxWriter:
    """The "write to outbox" step of ``defender-agent run`` (agent/scheduler.py ``_report_round``):
    the report (carrying its id) stored through the Backlog into the SQLite outbox (superseding under
    ``backlog: newest``) together with the status meta, in one durable transaction. Nothing is published."""

    def __init__(self, config: Any, sampler: Any, logger: logging.Logger) -> None:
        from agent.outbox.admission import Admission
        from agent.outbox.backlog import Backlog
        from agent.outbox.ids import OutboxIds
        from agent.outbox.store import Outbox

        self.config = config
        self.sampler = sampler
        self.outbox = Outbox.open(config.state_dir, logger)
        self.ids = OutboxIds(config.state_dir, self.outbox)
        admission = Admission(self.outbox, config.state_dir, logger)
        admission.configure(config.delivery.max_outbox_bytes, config.delivery.min_free_disk)
        self.backlog = Backlog(self.outbox, self.ids, admission, logger)

    def write(self, report_id: int, encoded: Any, samples: Any) -> None:
        import time

        from agent.outbox.store import Pending
        from agent.report.model import NetworkStats

        wall = time.time()
        network = next(
            (s.value for s in samples if s.name == "network_stats" and isinstance(s.value, NetworkStats)), None
        )
        pending = Pending.new(report_id, encoded.format, encoded.payload, wall, network)
        with self.outbox.transaction():
            self.backlog.store(pending, self.config.delivery)
            self.outbox.set_meta(
                {
                    "last_report_id": report_id,
                    "last_report_at": wall,
                    "collectors": {k: dict(v) for k, v in self.sampler.stats().items()},
                    "updated_at": time.time(),
                }
            )

    def close(self) -> None:
        self.outbox.close()


def outbox_writer(config: Any, sampler: Any, logger: logging.Logger) -> Optional[OutboxWriter]:
    """The "write to outbox" step, or None while ``agent.outbox.store`` is not on this branch
    (the figures then say "collect + encode" and name the missing part)."""
    try:
        found = importlib.util.find_spec("agent.outbox.store") is not None
    except ModuleNotFoundError:
        found = False
    if not found:
        return None
    return OutboxWriter(config, sampler, logger)


class Cycle:
    """One benchmark agent: built once, ``run()`` is one report cycle returning the payload."""

    def __init__(self, fmt: str, key_names: str, profile: str = "peer", custom_metrics: int = 0) -> None:
        try:
            from agent.collectors.build import build_collectors
            from agent.collectors.sampler import Sampler
            from agent.collectors.system import collector as system_collector
            from agent.config.load import parse_config
            from agent.report.builder import ReportBuilder
        except ImportError as exc:  # pragma: no cover - older branches
            raise NotAvailable(f"the collectors are not on this branch ({exc})") from exc
        # A first cpu_usage sample within 0.25 s of the previous one sleeps (wall time, no CPU) to get a
        # meaningful percentage; back-to-back benchmark cycles would spend most of their wall time asleep.
        system_collector.MIN_CPU_WINDOW = 0.0
        self.state_dir = Path(tempfile.mkdtemp(prefix="defender-bench-"))
        atexit.register(shutil.rmtree, self.state_dir, True)
        write_custom_files(self.state_dir, custom_metrics)
        text = config_text(fmt, key_names, self.state_dir, profile, custom_metrics)
        self.config = parse_config(text, "bench.yaml")
        logger = quiet_logger()
        self.jobs = build_collectors(self.config, logger=logger, persist_state=True)
        self.sampler = Sampler(
            self.jobs,
            self.config.report.interval,
            self.config.custom_metrics,
            logger=logger,
        )
        self.builder = ReportBuilder(self.config, logger)
        self.write = outbox_writer(self.config, self.sampler, logger)
        self.report_id = 1_700_000_000
        self.last_round: Any = None

    @property
    def includes_outbox(self) -> bool:
        return self.write is not None

    def run(self) -> bytes:
        round_ = self.sampler.sample_all()
        self.last_round = round_
        self.report_id = self.write.ids.next() if self.write is not None else self.report_id + 1
        encoded = self.builder.build(self.report_id, round_.samples)
        if self.write is not None:
            self.write.write(self.report_id, encoded, round_.samples)
        return bytes(encoded.payload)

    def close(self) -> None:
        self.sampler.close()
        if self.write is not None:
            self.write.close()
        shutil.rmtree(self.state_dir, ignore_errors=True)


def make_sampler(
    fmt: str, key_names: str, profile: str = "peer", custom_metrics: int = 0
) -> Callable[[], bytes]:
    cycle = Cycle(fmt, key_names, profile, custom_metrics)
    return cycle.run


def failures_of(cycle: Cycle) -> Dict[str, str]:
    """Collector failures of the last cycle (a benchmark with failing collectors measures nothing)."""
    round_ = cycle.last_round
    if round_ is None:
        return {}
    return {f.collector: f.reason for f in round_.failures}


def quiet_logger() -> logging.Logger:
    log = logging.getLogger("bench")
    log.addHandler(logging.NullHandler())
    log.propagate = False
    return log
