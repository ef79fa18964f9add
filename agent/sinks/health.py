"""The agent's own health at the end of a round: what the textfile exports and the opt-in health metrics send."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Tuple


@dataclass(frozen=True)
class CollectorHealth:
    name: str
    ok: bool  # the collector's last run gave data or "no data"; False: it failed or timed out
    duration: Optional[float]  # seconds its last run took; None before its first run


@dataclass(frozen=True)
class SinkHealth:
    name: str  # the sink's name in the config (defaults to its type)
    type: str  # defender | topic | textfile
    delivered: int  # counters since the outbox was created (they survive restarts)
    failed: int
    dropped: int
    pending: int


@dataclass(frozen=True)
class Health:
    collectors: Tuple[CollectorHealth, ...] = ()
    outbox_pending: int = 0  # reports and messages waiting in the outbox
    seconds_since_accepted: Optional[float] = None  # since the last accepted Device Defender report; None: none yet
    sinks: Tuple[SinkHealth, ...] = ()


def collector_health(stats: Mapping[str, Mapping[str, Any]]) -> Tuple[CollectorHealth, ...]:
    """From a sample source's ``stats()``: a collector is healthy unless its last run failed."""
    out = []
    for name in sorted(stats):
        entry = stats[name]
        duration = entry.get("last_duration")
        ran = bool(entry.get("ok") or entry.get("failed") or entry.get("no_data"))
        out.append(CollectorHealth(name, not entry.get("consecutive_failures"),
                                   float(duration) if ran and isinstance(duration, (int, float)) else None))
    return tuple(out)
