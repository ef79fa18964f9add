"""CPU busy percent from two ``cpu_times`` samples (pure), overall and per core."""

from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

# Linux: guest and guest_nice are already counted in user and nice (psutil does the same).
_EXCLUDED = ("guest", "guest_nice")
_IDLE = ("idle", "iowait")


def _fields(times: Any) -> Sequence[str]:
    return [f for f in getattr(times, "_fields", ()) if f not in _EXCLUDED]


def busy_percent(prev: Any, cur: Any) -> Optional[float]:
    """Percent of time not idle between two samples; ``None`` when no time passed."""
    fields = _fields(cur)
    total = sum(getattr(cur, f) - getattr(prev, f) for f in fields)
    idle = sum(getattr(cur, f) - getattr(prev, f) for f in fields if f in _IDLE)
    if total <= 0:
        return None
    return round(float(min(100.0, max(0.0, 100.0 * (total - idle) / total))), 2)


def per_core_percent(prev: Sequence[Any], cur: Sequence[Any]) -> Optional[Tuple[float, ...]]:
    """Busy percent per core; ``None`` when the core count changed (hotplug) or no time passed."""
    if len(prev) != len(cur) or not cur:
        return None
    values = [busy_percent(p, c) for p, c in zip(prev, cur)]
    if any(v is None for v in values):
        return None
    return tuple(v for v in values if v is not None)
