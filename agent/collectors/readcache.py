"""ReadCache: expensive reads shared by the collectors of one sampling round, read once per round.

``listening_ports`` and ``tcp_connections`` both need the kernel's socket table.
``psutil.net_connections()`` is the dearest call of a report cycle (it parses
/proc/net/* and walks every process's file descriptors, about 10 ms on a small
gateway), so the :class:`~agent.collectors.sampler.Sampler` keeps a round open
(``cache.round()``) while it samples, and :meth:`ReadCache.shared` memoizes such reads for its
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


class ReadCache:
    """Reads shared by the collectors of one build (one :func:`build_collectors` call).

    The :class:`~agent.collectors.sampler.Sampler` keeps a round open from each
    ``begin`` to its ``finish`` (``sample_all`` does both); collectors call
    :meth:`shared`. Two builds (two samplers) never share anything.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0  # rounds open now
        self._cache: Dict[str, _Entry] = {}

    @contextlib.contextmanager
    def round(self) -> Iterator[None]:
        """Share :meth:`shared` reads among the collectors running inside this block."""
        with self._lock:
            self._depth += 1
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0:
                    self._cache.clear()

    def shared(self, key: str, read: Callable[[], T]) -> T:
        """``read()``, or its result from earlier in the current round. Errors are not cached."""
        entry: Optional[_Entry] = None
        with self._lock:
            if self._depth:
                entry = self._cache.setdefault(key, _Entry())
        if entry is None:
            return read()
        with entry.lock:
            if not entry.done:
                entry.value = read()
                entry.done = True
            value: T = entry.value
            return value
