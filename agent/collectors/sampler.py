"""Failure isolation: run every due collector with its own timeout, check what it returns, keep stats.

Use (``once``, ``behaviors test``: one round, synchronously)::

    jobs = build_collectors(config)                      # agent.collectors.build
    sampler = Sampler(jobs, config.report.interval, config.custom_metrics)
    round_ = sampler.sample_all()                        # begin, wait until done or deadline, finish
    round_.samples     # every good Sample of this round (standard and custom)
    round_.failures    # who failed, how long it took, why
    sampler.sample()   # the same, samples only
    sampler.collector_stats()  # per collector: ok, failed, no_data, last duration, last error
    sampler.stats()    # the same as plain values, for the status meta
    sampler.close()

Use (the scheduler's loop, which must never block: the :class:`agent.sampling.SampleSource` rounds)::

    deadline = sampler.begin(wake)   # starts the due collectors, returns at once
    ...                              # wake() (from a worker thread) when every run has ended
    if sampler.ready() or clock() >= deadline:
        samples = sampler.finish()   # or finish_round() for the whole SampleRound

Each due collector runs in its own daemon worker thread (one per collector,
started on its first run and kept between rounds, so a round does not pay for
creating threads). Nothing here waits except :meth:`Sampler.sample_all`: a round
gives each run ``timeout + GRACE`` seconds from its start (the deadline
:meth:`Sampler.begin` returns is the latest of these), and at :meth:`Sampler.finish`
a run still going, or one that ended after its own limit, is a timeout: a hung
collector costs only its own metrics, and its thread stays busy with it. A
collector whose previous run is still going is not started again (that counts as a
failure, BUSY). ``close()`` waits for no run; an exec collector's ``close()`` kills
its program, so its thread ends at once. A collector that raises, times out,
or returns something that is not a list of declared samples loses all of its
samples for the round; a custom value that breaks the service's rules
(:func:`agent.report.rules.check_value`, after ``normalize_value``) loses only
that metric, and the collector counts as failed for the round. A failure is logged once per streak (warning, with name,
duration and reason) and recovery once (info). :class:`NoData` is not a failure:
counted apart and logged once per streak at info level.

Collectors of one build share expensive reads (:class:`ReadCache`, the socket
table) within a round: the cache's round is open from ``begin`` to ``finish``.

A collector with ``interval`` runs every ``ceil(interval / report_interval)``
rounds, the first round included.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, FrozenSet, List, Mapping, Optional, Sequence, Tuple

from agent.catalog import MetricType
from agent.collectors.contract import Collector, check_result, close_collector
from agent.collectors.readcache import ReadCache
from agent.collectors.workers import Run, Worker
from agent.config.model import CustomMetricConfig
from agent.errors import AgentError, NoData
from agent.report.model import Sample
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


class _Round:
    """A round between :meth:`Sampler.begin` and :meth:`Sampler.finish`: what it started, and its wake-up.

    ``wake`` is called once, when the last run it started has ended (or at once, from ``begin``, when
    none is left running), unless the round was ended first.
    """

    def __init__(self, wake: Callable[[], None], logger: logging.Logger) -> None:
        self.started: List[_State] = []
        self.failures: List[Failure] = []  # the BUSY ones, known at begin
        self.not_due: List[str] = []
        self.reads = contextlib.ExitStack()  # the shared-read caches' rounds, open until finish
        self._wake = wake
        self._logger = logger
        self._lock = threading.Lock()
        self._pending = 1  # begin() holds one until it has started every run
        self._over = False  # woken, or ended without waking
        self.changed = threading.Event()  # set whenever a run ends (for sample_all's wait)

    def hold(self) -> None:
        with self._lock:
            self._pending += 1

    def release(self) -> None:
        """One run ended (on its worker thread), or begin() has started them all."""
        self.changed.set()
        with self._lock:
            self._pending -= 1
            if self._pending or self._over:
                return
            self._over = True
        try:
            self._wake()
        except Exception as exc:  # a worker thread must survive whatever the loop's callback does
            self._logger.warning("Waking the loop after a sampling round failed: %s", exc)

    def end(self) -> None:
        """No wake-up from now on (the round is finished, or the sampler closed)."""
        with self._lock:
            self._over = True
        self.reads.close()


@dataclass
class _State:
    job: CollectorJob
    every: int
    worker: Worker
    last_round: Optional[int] = None
    run: Optional[Run] = None
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
        self._current: Optional[_Round] = None  # between begin() and finish()
        self._not_due: FrozenSet[str] = frozenset()
        self._states: Dict[str, _State] = {
            j.name: _State(j, rounds_between(j.interval, report_interval), Worker(j.name)) for j in jobs
        }
        self._caches = list({id(j.reads): j.reads for j in jobs if j.reads is not None}.values())

    def sample(self) -> Tuple[Sample, ...]:
        """One round's good samples, synchronously (:meth:`sample_all`)."""
        return self.sample_all().samples

    def emits(self) -> FrozenSet[str]:
        """Every metric (report name) its collectors declared."""
        return frozenset(name for state in self._states.values() for name in state.job.emits)

    def not_due_metrics(self) -> FrozenSet[str]:
        """The metrics (report names) of the collectors the last finished round did not run because their
        ``interval`` was not up: absent from that round by schedule, not because a collector failed."""
        return self._not_due

    def sample_all(self) -> SampleRound:
        """One whole round: :meth:`begin`, wait until :meth:`ready`, :meth:`finish_round`.

        The wait ends as soon as every run has ended or run past its own limit: a hung collector holds
        the round no longer than its own ``timeout + GRACE``."""
        self.begin()
        current = self._current
        assert current is not None
        while True:
            current.changed.clear()  # before looking: a run that ends from now on sets it again
            now = self._clock()
            limits = [self._limit(state) for state in current.started if self._running(state)]
            if not limits or max(limits) <= now:
                break
            current.changed.wait(max(limits) - now)
        return self.finish_round()

    def begin(self, wake: Callable[[], None] = lambda: None) -> float:
        """Start the due collectors, each on its worker thread, and return at once.

        Returns the monotonic deadline by which the round gives up on its stragglers: the latest
        ``started + timeout + GRACE`` of the runs it started (now, when it started none). ``wake`` is
        called once every run this round started has ended: on the worker thread of the last one,
        or before ``begin`` returns when none is left running. It is not called for a round already
        finished (a call under way may still land just after :meth:`finish`; it must be harmless).
        Call :meth:`finish` (or :meth:`finish_round`) before the next ``begin``.
        """
        if self._current is not None:
            raise RuntimeError("Sampler.begin() while a round is open: finish() it first")
        self._round += 1
        current = _Round(wake, self._logger)
        try:
            for cache in self._caches:  # collectors share expensive reads (the socket table) per round
                current.reads.enter_context(cache.round())
            for state in self._states.values():
                if state.last_round is not None and self._round - state.last_round < state.every:
                    current.not_due.append(state.job.name)
                    continue
                state.last_round = self._round
                if state.run is not None and state.run.is_running():
                    busy = self._clock() - state.run.started
                    current.failures.append(
                        self._fail(state, 0.0, f"previous run still going after {busy:.1f}s", FailureKind.BUSY)
                    )
                    continue
                current.hold()
                state.run = Run(state.job.collector, self._clock, current.release)
                state.worker.submit(state.run)
                current.started.append(state)
        except BaseException:
            current.end()
            raise
        deadline = max((self._limit(state) for state in current.started), default=self._clock())
        self._current = current
        current.release()  # begin's own hold: wakes now if every run has already ended
        return deadline

    def ready(self) -> bool:
        """Nothing is left to wait for: every run the current round started has ended, or has run past
        its own ``timeout + GRACE`` (:meth:`finish` counts it as timed out). True when no round is open."""
        current = self._current
        if current is None:
            return True
        now = self._clock()
        return not any(self._running(state) and self._limit(state) > now for state in current.started)

    def finish(self) -> Tuple[Sample, ...]:
        """The round's good samples (:meth:`finish_round`): the :class:`agent.sampling.SampleSource` view."""
        return self.finish_round().samples

    def finish_round(self) -> SampleRound:
        """Gather the round :meth:`begin` started, without waiting: a run still going (or one that ended
        after its ``timeout + GRACE``) is a timeout. Sets what :meth:`not_due_metrics` returns."""
        current = self._current
        if current is None:
            raise RuntimeError("Sampler.finish() without begin()")
        self._current = None
        current.end()
        samples: List[Sample] = []
        failures = current.failures
        no_data: Dict[str, str] = {}
        for state in current.started:
            run = state.run
            assert run is not None
            ended = None if run.is_running() else run.finished
            duration = (self._clock() if ended is None else ended) - run.started
            if ended is None or ended > self._limit(state):  # still going, or its result came too late
                failures.append(
                    self._fail(state, duration, f"timed out after {state.job.timeout:g}s", FailureKind.TIMEOUT)
                )
                continue
            if isinstance(run.error, NoData):
                no_data[state.job.name] = str(run.error) or "no data"
                self._no_data(state, duration, no_data[state.job.name])
            elif run.error is not None:
                reason = str(run.error) or type(run.error).__name__
                if not isinstance(run.error, AgentError):
                    reason = f"{type(run.error).__name__}: {reason}"
                failures.append(self._fail(state, duration, reason, FailureKind.ERROR))
            else:
                checked, problem = check_result(state.job.emits, run.result, self._custom_metrics)
                samples.extend(checked)
                if problem is not None:
                    failures.append(self._fail(state, duration, problem, FailureKind.BAD_VALUE))
                else:
                    self._succeed(state, duration)
        self._not_due = frozenset(m for name in current.not_due for m in self._states[name].job.emits)
        return SampleRound(tuple(samples), tuple(failures), no_data, tuple(current.not_due), self.collector_stats())

    @staticmethod
    def _limit(state: _State) -> float:
        """When the current run of ``state`` is given up: its start, plus its timeout, plus GRACE."""
        assert state.run is not None
        return state.run.started + state.job.timeout + GRACE

    @staticmethod
    def _running(state: _State) -> bool:
        return state.run is not None and state.run.is_running()

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
        self._record(state, duration, kind not in (FailureKind.BUSY, FailureKind.TIMEOUT))
        return Failure(state.job.name, duration, reason, kind)

    def _succeed(self, state: _State, duration: float) -> None:
        self._recovered(state)
        state.ok += 1
        state.no_data_logged = False
        self._record(state, duration, True)

    def _no_data(self, state: _State, duration: float, reason: str) -> None:
        self._recovered(state)
        if not state.no_data_logged:
            self._logger.info("Collector %r has no data: %s", state.job.name, reason)
            state.no_data_logged = True
        state.no_data += 1
        self._record(state, duration, True)

    def _recovered(self, state: _State) -> None:
        if state.consecutive_failures:
            self._logger.info(
                "Collector %r recovered after %d failed sample(s)", state.job.name, state.consecutive_failures
            )
        state.consecutive_failures = 0

    def _record(self, state: _State, duration: float, finished: bool) -> None:
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
                running=self._running(s),
            )
            for name, s in self._states.items()
        }

    def close(self) -> None:
        """Close every collector (``close()`` where it has one); errors are logged, not raised.

        Waits for no run: an open round is dropped (no wake-up), and each worker thread ends once its
        current run returns. An exec collector's ``close()`` kills its program, so its run returns at
        once; a run hung elsewhere keeps its daemon thread until it returns.
        """
        current, self._current = self._current, None
        if current is not None:
            current.end()
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
