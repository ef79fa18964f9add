"""``violations.exec``: a program run once per violation event, in a thread of its own, never blocking the loop.

The event goes to the program as JSON on stdin; its result comes back to the loop as a
:class:`agent.events.HookDone`. The queue of events waiting for it is bounded
(:data:`HOOK_QUEUE`); the program is killed after ``violations.exec_timeout`` or once it writes
more than :data:`MAX_OUTPUT` bytes to stdout (its output is not read by the agent).
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
from typing import Any, Dict, Optional, Sequence

from agent.collectors.process import program_problem, run_bounded
from agent.config.model import Config
from agent.errors import ConfigError
from agent.events import HookDone

HOOK_QUEUE = 100  # events waiting for the exec program; more are not handed to it (logged)
MAX_OUTPUT = 65536  # bytes of stdout before the program is killed


def check_exec(config: Config) -> None:
    """``violations.exec``'s program may be run (the exec collector's rules); raises :class:`ConfigError`."""
    argv = config.violations.exec
    if config.behaviors and argv:
        problem = program_problem(argv[0])
        if problem is not None:
            raise ConfigError.single(config.source, "violations.exec[0]", problem)


class HookRunner:
    """Runs ``argv`` once per event in a thread of its own, with the event as JSON on stdin (bounded queue)."""

    def __init__(self, argv: Sequence[str], timeout: float, events: queue.SimpleQueue[object]) -> None:
        self.argv = tuple(argv)
        self.timeout = timeout
        self.events = events
        self.jobs: queue.Queue[Optional[Dict[str, Any]]] = queue.Queue(maxsize=HOOK_QUEUE)
        self.thread = threading.Thread(target=self._work, name="violations-exec", daemon=True)
        self.thread.start()

    def submit(self, event: Dict[str, Any]) -> bool:
        try:
            self.jobs.put_nowait(event)
        except queue.Full:
            return False
        return True

    def _work(self) -> None:
        while True:
            event = self.jobs.get()
            if event is None:
                return
            vid = str(event.get("violationId"))
            try:
                result = run_bounded(self.argv, self.timeout, MAX_OUTPUT, stdin=json.dumps(event).encode() + b"\n")
            except OSError as exc:
                self.events.put(HookDone(vid, False, f"cannot run {self.argv[0]}: {exc}"))
                continue
            if result.ok:
                self.events.put(HookDone(vid, True))
                continue
            line = "" if result.timed_out or result.overflow else result.stderr_line()
            self.events.put(HookDone(vid, False, f"{self.argv[0]} {result.describe()}" + (f": {line}" if line else "")))

    def stop(self, timeout: float = 2.0) -> None:
        """Ask the thread to end after its current event (waiting at most ``timeout``); queued events are dropped."""
        while True:
            try:
                self.jobs.get_nowait()
            except queue.Empty:
                break
        with contextlib.suppress(queue.Full):
            self.jobs.put_nowait(None)
        self.thread.join(timeout)


