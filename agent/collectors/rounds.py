"""Data shared by the collectors of one sampling round, read once per round.

``listening_ports`` and ``tcp_connections`` both need the kernel's socket table.
``psutil.net_connections()`` is the dearest call of a report cycle (it parses
/proc/net/* and walks every process's file descriptors, about 10 ms on a small
gateway), so the :class:`~agent.collectors.sampler.Sampler` opens a round
(``with sampling_round():``) and :func:`shared` memoizes such reads for its
duration: concurrent callers wait for the one read in flight and get the same
result. Outside a round (a collector called directly, a collector thread that
outlived its round's timeout) every call reads afresh, so nothing is ever stale
and nothing is held between rounds.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Callable, Dict, Iterator, Optional, TypeVar

T = TypeVar("T")

class _Entry:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.done = False
        self.value: Any = None


class _Rounds:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.depth = 0  # rounds open now (nested or from two samplers)
        self.cache: Dict[str, _Entry] = {}


_STATE = _Rounds()


@contextlib.contextmanager
def sampling_round() -> Iterator[None]:
    """Share :func:`shared` reads among the collectors running inside this block."""
    with _STATE.lock:
        _STATE.depth += 1
    try:
        yield
    finally:
        with _STATE.lock:
            _STATE.depth -= 1
            if _STATE.depth == 0:
                _STATE.cache.clear()


def shared(key: str, read: Callable[[], T]) -> T:
    """``read()``, or its result from earlier in the current round. Errors are not cached."""
    entry: Optional[_Entry] = None
    with _STATE.lock:
        if _STATE.depth:
            entry = _STATE.cache.setdefault(key, _Entry())
    if entry is None:
        return read()
    with entry.lock:
        if not entry.done:
            entry.value = read()
            entry.done = True
        value: T = entry.value
        return value
