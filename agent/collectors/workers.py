"""The threads that run collectors: one daemon worker per collector, one :class:`Run` at a time.

A run that hangs keeps its worker busy and nothing else: the sampler
(:mod:`agent.collectors.sampler`) never waits on a run and does not submit another while one is going.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Optional

from agent.collectors.contract import Collector


class Run:
    """One collect() call, executed by the collector's :class:`Worker`; ``ended`` is called after it."""

    def __init__(self, collector: Collector, clock: Callable[[], float], ended: Callable[[], None]) -> None:
        self.started = clock()
        self.finished: Optional[float] = None
        self.result: Any = None
        self.error: Optional[BaseException] = None
        self._collector = collector
        self._clock = clock
        self._ended = ended
        self._done = threading.Event()

    def execute(self) -> None:
        try:
            self.result = self._collector.collect()
        except BaseException as exc:  # reported to the sampler, never lost
            self.error = exc
        finally:
            self.finished = self._clock()
            self._done.set()
            self._ended()

    def is_running(self) -> bool:
        return not self._done.is_set()


class Worker:
    """A daemon thread that executes one collector's runs, one at a time, until stopped.

    A run that hangs keeps its worker busy; the sampler does not submit another
    run while one is going, so a worker never has more than one run queued.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._queue: Optional[queue.SimpleQueue[Optional[Run]]] = None

    def submit(self, run: Run) -> None:
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


def _work(runs: queue.SimpleQueue[Optional[Run]]) -> None:
    while True:
        run = runs.get()
        if run is None:
            return
        run.execute()
