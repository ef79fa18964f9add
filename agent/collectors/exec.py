"""The ``exec`` collector: run a program and parse its stdout as one custom metric value.

Safe by default: absolute path and an argv list (no shell); the program file must
not be group- or world-writable nor owned by a user other than root or the
agent's (checked at build and before every run); a fixed minimal environment
(plus ``env``); cwd ``/``; stdin empty; a timeout (the collector's ``timeout``,
default 10 s) that kills the whole process group; stdout capped by ``max_output``
and stderr by 4 KiB; never two runs of one collector at once. ``close()`` kills the
process group of a run still going at once (the agent stops or reloads), so that
neither the agent nor its collector thread waits for a hung program.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any, List, Mapping, Optional, Tuple

from agent.catalog import METRIC_NAME, MetricType
from agent.collectors.contract import BuildContext, CollectorSpec, Emits
from agent.collectors.parse import FORMATS, ValueParseError, parse_value
from agent.collectors.process import Running, program_problem, run_bounded
from agent.errors import CollectorError
from agent.report.model import Sample
from agent.schema import REQUIRED, Argv, Enum, MapOf, Size, Str


class ExecCollector:
    def __init__(
        self,
        name: str,
        *,
        argv: Tuple[str, ...],
        metric: str,
        mtype: MetricType,
        fmt: str,
        timeout: float,
        max_output: int,
        env: Optional[Mapping[str, str]] = None,
    ) -> None:
        self.name = name
        self._argv = argv
        self._metric = metric
        self._type = mtype
        self._format = fmt
        self._timeout = timeout
        self._max_output = max_output
        self._env = dict(env or {})
        self._running = threading.Lock()
        self._processes = Running()  # what close() kills

    def collect(self) -> List[Sample]:
        if not self._running.acquire(blocking=False):
            raise CollectorError(f"{self._argv[0]} is still running from the previous sample")
        try:
            return self._run()
        finally:
            self._running.release()

    def close(self) -> None:
        """Kill the program's process group if a run is going (that run then fails); start no other."""
        self._processes.kill_all()

    def _run(self) -> List[Sample]:
        prog = self._argv[0]
        if self._processes.closed:
            raise CollectorError(f"{prog} not started: the collector is closed")
        problem = program_problem(prog)
        if problem:
            raise CollectorError(f"refusing to run it: {problem}")
        try:
            result = run_bounded(self._argv, self._timeout, self._max_output, env=self._env,
                                 running=self._processes)
        except OSError as exc:
            raise CollectorError(f"cannot start {prog}: {exc.strerror or exc}") from exc
        stderr = result.stderr_line()
        tail = f": {stderr}" if stderr else ""
        if not result.ok:  # "timed out after 5s; ...", "was killed: wrote more than 64KiB to stdout", ...
            hint = " (max_output)" if result.overflow else ""
            raise CollectorError(f"{prog} {result.describe()}{hint}{tail}")
        try:
            text = result.stdout.decode("utf-8")
            value = parse_value(text, self._type, self._format)
        except UnicodeDecodeError:
            raise CollectorError(f"{prog} output is not UTF-8 text{tail}") from None
        except ValueParseError as exc:
            raise CollectorError(f"{prog} output is not a {self._type.value}: {exc}{tail}") from None
        return [Sample(self._metric, value)]


def single_metric_emits(options: Mapping[str, Any]) -> Emits:
    """``emits`` of a collector configured by :func:`metric_options` (exec, file): its one custom metric."""
    return {options["metric"]: MetricType(options["metric_type"])}


def _build(ctx: BuildContext, options: Mapping[str, Any]) -> ExecCollector:
    argv = tuple(options["command"])
    problem = program_problem(argv[0])
    if problem:
        raise CollectorError(f"command: {problem}")
    return ExecCollector(
        ctx.name,
        argv=argv,
        metric=options["metric"],
        mtype=MetricType(options["metric_type"]),
        fmt=options["format"],
        timeout=ctx.timeout,
        max_output=options["max_output"],
        env=options["env"],
    )


def metric_options(kind: str) -> Mapping[str, Any]:
    """Options shared by ``exec`` and ``file``: which metric, its type, how to parse."""
    return {
        "metric": dataclasses.replace(
            METRIC_NAME,
            doc="Custom metric name the value is sent as (declare it under custom_metrics).",
            default=REQUIRED,
        ),
        "metric_type": Enum(
            doc="Declared type of the metric; must match custom_metrics.",
            default=REQUIRED,
            of=MetricType,
        ),
        "format": Enum(
            doc=f"How the {kind} holds the value: one value per line, JSON, "
            'or auto (JSON when it starts with [ { or ").',
            default="auto",
            choices=FORMATS,
        ),
    }


DOC = """\
Runs a program without a shell: the path must be absolute, and the file must not be group- or
world-writable nor owned by a user other than root or the agent's. The environment is only `PATH`, `LANG`
and `LC_ALL` plus `env`; the working directory is `/`. The program runs in its own process group, which is
killed at the collector's `timeout`, when stdout exceeds `max_output`, and once the program exits (no
leftovers). A non-zero exit, a signal, or output that does not parse as `metric_type` is an error whose
message includes the first line of stderr. Output: one value per line (`#` comments and blank lines
ignored), or JSON (a number, or an array). A collector never runs twice at once.
"""

SAMPLE = """\
collectors:
  - type: exec
    name: mesh_peers
    command: [/usr/local/lib/defender-agent/count-peers, --json]
    metric: mesh_peers
    metric_type: ip-address-list
    timeout: 5s
custom_metrics:
  mesh_peers: ip-address-list
"""


SPEC = CollectorSpec(
    type="exec",
    doc=DOC,
    sample=SAMPLE,
    summary="Run a program (absolute path, argv list, no shell) and parse its stdout as one custom metric.",
    options={
        "command": Argv(
            doc="Program and arguments; the program must be an absolute path, not group/world-writable, "
            "owned by root or the agent's user.",
            item=Str(),
            default=REQUIRED,
            example=["/usr/local/lib/defender-agent/count-peers", "--json"],
        ),
        **metric_options("output"),
        "env": MapOf(doc="Extra environment variables (the base is PATH, LANG and LC_ALL only).", default={}),
        "max_output": Size(
            doc="Largest stdout accepted; more kills the run.", default=65536, min=1, max=16 * 2**20
        ),
    },
    build=_build,
    emits=single_metric_emits,
    example_enabled=False,
    example={
        "command": ["/usr/local/lib/defender-agent/count-peers", "--json"],
        "metric": "mesh_peers",
        "metric_type": "ip-address-list",
    },
)
