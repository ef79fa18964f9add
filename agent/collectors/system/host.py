"""Pure conversions for memory, load, temperature, uptime and users."""

from __future__ import annotations

import math
from fnmatch import fnmatchcase
from typing import Any, Mapping, Optional, Sequence, Tuple


def load_average(raw: Sequence[float]) -> Tuple[float, ...]:
    return tuple(round(float(v), 2) for v in raw)


def max_temperature(sensors: Mapping[str, Sequence[Any]], patterns: Sequence[str]) -> Optional[float]:
    """Highest current reading of the sensors whose chip name (or ``chip/label``) matches a pattern.

    ``None`` when no sensor matches or none has a reading: that is "no data", not an error.
    """
    best: Optional[float] = None
    for chip in sorted(sensors):
        for entry in sensors[chip]:
            label = getattr(entry, "label", "") or ""
            names = (chip, f"{chip}/{label}")
            if not any(fnmatchcase(n, p) for n in names for p in patterns):
                continue
            current = getattr(entry, "current", None)
            if isinstance(current, (int, float)) and math.isfinite(current) and -100.0 < current < 250.0:
                best = current if best is None else max(best, current)
    return None if best is None else round(float(best), 1)


def user_names(users: Sequence[Any]) -> Tuple[str, ...]:
    """Distinct login names, sorted (one user with three sessions counts once)."""
    return tuple(sorted({str(u.name) for u in users if getattr(u, "name", "")}))


def uptime_seconds(boot_time: float, now: float) -> int:
    return max(0, int(now - boot_time))
