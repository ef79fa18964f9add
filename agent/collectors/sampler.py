"""Failure isolation: run every due collector with its own timeout, check what it returns, keep stats.

Use (the scheduler or ``once``)::

    jobs = build_collectors(config)                      # agent.collectors.build
    sampler = Sampler(jobs, config.report.interval, config.custom_metrics)
    round_ = sampler.sample_all()                        # once per report (``once``)
    round_.samples     # every good Sample of this round (standard and custom)
    round_.failures    # who failed, how long it took, why
    sampler.sample()   # the same, samples only: the scheduler's agent.sampling.SampleSource
    sampler.collector_stats()  # per collector: ok, failed, no_data, last duration, last error
    sampler.stats()    # the same as plain values, for the status meta
    sampler.close()

Each due collector runs in its own daemon worker thread (one per collector,
started on its first run and kept between rounds, so a round does not pay for
creating threads); the round waits for each at most ``timeout + GRACE`` seconds
after it started, so a hung collector costs only its own metrics. A collector
whose previous run is still going is not started again (that counts as a
failure): its worker is busy until that run returns. A collector that raises, times out,
or returns something that is not a list of declared samples loses all of its
samples for the round; a custom value that breaks the service's rules
(:func:`agent.report.rules.check_value`, after ``normalize_value``) loses only
that metric, and the collector counts as failed for the round. A failure is logged once per streak (warning, with name,
duration and reason) and recovery once (info). :class:`NoData` is not a failure:
counted apart and logged once per streak at info level.

A collector with ``interval`` runs every ``ceil(interval / report_interval)``
rounds, the first round included.
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, FrozenSet, List, Mapping, Optional, Sequence, Tuple

from agent.catalog import MetricType
from agent.collectors.contract import Collector, close_collector
from agent.collectors.readcache import ReadCache
from agent.config.model import CustomMetricConfig
from agent.errors import AgentError, NoData
from agent.report.model import Sample, SampleKind, standard_value_class
from agent.report.rules import check_value, normalize_value
from agent.schema import TextEnum

GRACE = 0.5  # seconds beyond a collector's timeout before the round gives up on it


@dataclass(frozen=True)
class CollectorJob:
    """A built collector plus what the sampler needs to run and check it."""

    name: str
    type: str
    collector: Collector
    timeout: float
    interval: Optional[float] = None
    emits: Mapping[str, Optional[MetricType]] = field(default_factory=dict)
    origin: str = "built-in"
    reads: Optional[ReadCache] = None  # the build's shared-read cache, opened once per round


@dataclass(frozen=True)
class CollectorStats:
    name: str
    type: str
    ok: int = 0
    failed: int = 0
    no_data: int = 0
    consecutive_failures: int = 0
    last_duration: Optional[float] = None
    last_error: Optional[str] = None
    last_run: Optional[float] = None  # wall-clock start of the last finished run
    running: bool = False

    def status(self) -> Dict[str, Any]:
        """The counters ``defender-agent status`` shows, as plain values."""
        return {"ok": self.ok, "failed": self.failed, "no_data": self.no_data,
                "last_duration": self.last_duration, "last_error": self.last_error,
                "consecutive_failures": self.consecutive_failures}


class FailureKind(TextEnum):
    ERROR = "error"  # collect() raised
    TIMEOUT = "timeout"
    BUSY = "busy"  # the previous run is still going
    BAD_VALUE = "bad_value"  # returned something the contract or the service's rules refuse


@dataclass(frozen=True)
class Failure:
    collector: str
    duration: float
    reason: str
    kind: FailureKind


@dataclass(frozen=True)
class SampleRound:
    samples: Tuple[Sample, ...]
    failures: Tuple[Failure, ...]
    no_data: Mapping[str, str]  # collector -> reason
    not_due: Tuple[str, ...]
    stats: Mapping[str, CollectorStats]


class _Run:
    """One collect() call, executed by the collector's :class:`_Worker`."""

    def __init__(self, collector: Collector, clock: Callable[[], float]) -> None:
        self.started = clock()
        self.finished: Optional[float] = None
        self.result: Any = None
        self.error: Optional[BaseException] = None
        self._collector = collector
        self._clock = clock
        self._done = threading.Event()

    def execute(self) -> None:
        try:
            self.result = self._collector.collect()
        except BaseException as exc:  # reported to the sampler, never lost
            self.error = exc
        finally:
            self.finished = self._clock()
            self._done.set()

    def wait(self, timeout: float) -> None:
        self._done.wait(timeout)

    def is_running(self) -> bool:
        return not self._done.is_set()


class _Worker:
    """A daemon thread that executes one collector's runs, one at a time, until stopped.

    A run that hangs keeps its worker busy; the sampler does not submit another
    run while one is going, so a worker never has more than one run queued.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._queue: Optional[queue.SimpleQueue[Optional[_Run]]] = None

    def submit(self, run: _Run) -> None:
        if self._queue is None:
            self._queue = queue.SimpleQueue()
            thread = threading.Thread(
                target=_work, args=(self._queue,), name=f"collector-{self._name}", daemon=True
            )
            thread.start()
        self._queue.put(run)

    def stop(self) -> None:
        """Let the thread end after its current run; a later :meth:`submit` starts a new one."""
        if self._queue is not None:
            self._queue.put(None)
            self._queue = None


def _work(runs: queue.SimpleQueue[Optional[_Run]]) -> None:
    while True:
        run = runs.get()
        if run is None:
            return
        run.execute()


@dataclass
class _State:
    job: CollectorJob
    every: int
    worker: _Worker
    last_round: Optional[int] = None
    run: Optional[_Run] = None
    ok: int = 0
    failed: int = 0
    no_data: int = 0
    consecutive_failures: int = 0
    last_duration: Optional[float] = None
    last_error: Optional[str] = None
    last_run: Optional[float] = None
    no_data_logged: bool = False


class Sampler:
    def __init__(
        self,
        jobs: Sequence[CollectorJob],
        report_interval: float,
        custom_metrics: Mapping[str, CustomMetricConfig],
        *,
        logger: Optional[logging.Logger] = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        names = [j.name for j in jobs]
        if len(set(names)) != len(names):
            raise ValueError(f"collector names must be unique, got {names}")
        self._custom_metrics = dict(custom_metrics)
        self._logger = logger or logging.getLogger("agent.collectors.sampler")
        self._clock = clock
        self._wall = wall
        self._round = 0
        self._not_due: FrozenSet[str] = frozenset()
        self._states: Dict[str, _State] = {
            j.name: _State(j, rounds_between(j.interval, report_interval), _Worker(j.name)) for j in jobs
        }
        self._caches = list({id(j.reads): j.reads for j in jobs if j.reads is not None}.values())

    def sample(self) -> Tuple[Sample, ...]:
        """One round's good samples (what the scheduler needs of a round)."""
        result = self.sample_all()
        self._not_due = frozenset(m for name in result.not_due for m in self._states[name].job.emits)
        return result.samples

    def not_due_metrics(self) -> FrozenSet[str]:
        """The metrics (report names) of the collectors the last :meth:`sample` did not run because their
        ``interval`` was not up: absent from that round by schedule, not because a collector failed."""
        return self._not_due

    def sample_all(self) -> SampleRound:
        """Run the due collectors concurrently and gather their checked samples."""
        with contextlib.ExitStack() as stack:  # collectors share expensive reads (the socket table) per round
            for cache in self._caches:
                stack.enter_context(cache.round())
            return self._sample_all()

    def _sample_all(self) -> SampleRound:
        self._round += 1
        started: List[_State] = []
        failures: List[Failure] = []
        not_due: List[str] = []
        for state in self._states.values():
            if state.last_round is not None and self._round - state.last_round < state.every:
                not_due.append(state.job.name)
                continue
            state.last_round = self._round
            if state.run is not None and state.run.is_running():
                busy = self._clock() - state.run.started
                failures.append(self._fail(state, 0.0, f"previous run still going after {busy:.1f}s", FailureKind.BUSY))
                continue
            state.run = _Run(state.job.collector, self._clock)
            state.worker.submit(state.run)
            started.append(state)
        samples: List[Sample] = []
        no_data: Dict[str, str] = {}
        for state in started:
            run = state.run
            assert run is not None
            run.wait(max(0.0, run.started + state.job.timeout + GRACE - self._clock()))
            if run.is_running():
                duration = self._clock() - run.started
                failures.append(
                    self._fail(state, duration, f"timed out after {state.job.timeout:g}s", FailureKind.TIMEOUT)
                )
                continue
            duration = (run.finished or self._clock()) - run.started
            if isinstance(run.error, NoData):
                no_data[state.job.name] = str(run.error) or "no data"
                self._no_data(state, duration, no_data[state.job.name])
            elif run.error is not None:
                reason = str(run.error) or type(run.error).__name__
                if not isinstance(run.error, AgentError):
                    reason = f"{type(run.error).__name__}: {reason}"
                failures.append(self._fail(state, duration, reason, FailureKind.ERROR))
            else:
                checked, problem = self._check(state.job, run.result)
                samples.extend(checked)
                if problem is not None:
                    failures.append(self._fail(state, duration, problem, FailureKind.BAD_VALUE))
                else:
                    self._succeed(state, duration)
        return SampleRound(tuple(samples), tuple(failures), no_data, tuple(not_due), self.collector_stats())

    def _check(self, job: CollectorJob, result: Any) -> Tuple[List[Sample], Optional[str]]:
        """(the samples to keep, why the collector failed this round or None).

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
            if item.name not in job.emits:
                return (
                    [],
                    f"sample {item.name!r} is not one of the metrics it declared ({', '.join(job.emits)})",
                )
            declared = job.emits[item.name]
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
            definition = self._custom_metrics.get(item.name)
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

    def _fail(self, state: _State, duration: float, reason: str, kind: FailureKind) -> Failure:
        if state.consecutive_failures == 0:
            self._logger.warning(
                "Collector %r (%s) failed after %.3fs: %s", state.job.name, state.job.type, duration, reason
            )
        else:
            self._logger.debug("Collector %r still failing after %.3fs: %s", state.job.name, duration, reason)
        state.failed += 1
        state.consecutive_failures += 1
        state.last_error = reason
        self._finish(state, duration, kind not in (FailureKind.BUSY, FailureKind.TIMEOUT))
        return Failure(state.job.name, duration, reason, kind)

    def _succeed(self, state: _State, duration: float) -> None:
        self._recovered(state)
        state.ok += 1
        state.no_data_logged = False
        self._finish(state, duration, True)

    def _no_data(self, state: _State, duration: float, reason: str) -> None:
        self._recovered(state)
        if not state.no_data_logged:
            self._logger.info("Collector %r has no data: %s", state.job.name, reason)
            state.no_data_logged = True
        state.no_data += 1
        self._finish(state, duration, True)

    def _recovered(self, state: _State) -> None:
        if state.consecutive_failures:
            self._logger.info(
                "Collector %r recovered after %d failed sample(s)", state.job.name, state.consecutive_failures
            )
        state.consecutive_failures = 0

    def _finish(self, state: _State, duration: float, finished: bool) -> None:
        state.last_duration = duration
        if finished and state.run is not None:
            state.last_run = self._wall() - (self._clock() - state.run.started)

    def stats(self) -> Dict[str, Dict[str, Any]]:
        """Per collector, the counters ``status`` shows (the :class:`agent.sampling.SampleSource` view)."""
        return {name: stats.status() for name, stats in self.collector_stats().items()}

    def collector_stats(self) -> Dict[str, CollectorStats]:
        """A snapshot per collector."""
        return {
            name: CollectorStats(
                name=name,
                type=s.job.type,
                ok=s.ok,
                failed=s.failed,
                no_data=s.no_data,
                consecutive_failures=s.consecutive_failures,
                last_duration=s.last_duration,
                last_error=s.last_error,
                last_run=s.last_run,
                running=s.run is not None and s.run.is_running(),
            )
            for name, s in self._states.items()
        }

    def close(self) -> None:
        """Close every collector (``close()`` where it has one); errors are logged, not raised.

        Worker threads end once their current run returns (a hung one stays, as a daemon).
        """
        for state in self._states.values():
            state.worker.stop()
            try:
                close_collector(state.job.collector)
            except Exception as exc:
                self._logger.warning("Collector %r failed to close: %s", state.job.name, exc)


def rounds_between(interval: Optional[float], report_interval: float) -> int:
    """How many report rounds apart a collector with ``interval`` runs (1: every round)."""
    if not interval or report_interval <= 0:
        return 1
    return max(1, math.ceil(interval / report_interval - 1e-9))
