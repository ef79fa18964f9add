"""When each pending report goes out: at once when stored, then again with backoff until a reply settles it.

:class:`ResendClock` keeps one monotonic due time per pending report id. It only keeps
times; the defender consumer decides what to publish (only ever the newest pending report)
and records the attempt in the outbox.
"""

from __future__ import annotations

import random
from typing import Dict, Iterable, List, Optional

from agent.config.model import DeliveryConfig


def backoff(attempt: int, delivery: DeliveryConfig, rng: random.Random) -> float:
    """Seconds to wait for a reply after publish number ``attempt`` (1-based) before publishing again.

    The first wait is ``reply_timeout``; later ones double (with up to 20 % jitter),
    never beyond ``retry_max_delay`` and never below the smaller of the two.
    """
    d = delivery
    base = d.reply_timeout if attempt <= 1 else min(d.retry_max_delay, d.reply_timeout * 2 ** (attempt - 1))
    jittered = base * (1.0 + 0.2 * rng.random()) if attempt > 1 else base
    return max(min(d.reply_timeout, d.retry_max_delay), min(jittered, d.retry_max_delay))


class ResendClock:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.due_at: Dict[int, float] = {}  # report id -> monotonic time of its next publish

    def __len__(self) -> int:
        return len(self.due_at)

    def __bool__(self) -> bool:
        return bool(self.due_at)

    def __contains__(self, report_id: object) -> bool:
        return report_id in self.due_at

    def schedule(self, report_id: int, at: float) -> None:
        self.due_at[report_id] = at

    def schedule_all(self, report_ids: Iterable[int], at: float) -> None:
        for rid in report_ids:
            self.due_at[rid] = at

    def forget(self, report_id: int) -> None:
        self.due_at.pop(report_id, None)

    def forget_all(self, report_ids: Iterable[int]) -> None:
        for rid in report_ids:
            self.due_at.pop(rid, None)

    def next_deadline(self) -> Optional[float]:
        return min(self.due_at.values()) if self.due_at else None

    def due(self, now: float) -> List[int]:
        """Ids whose publish is due, oldest first."""
        return sorted(rid for rid, at in self.due_at.items() if at <= now)

    def sent(self, report_id: int, now: float, attempt: int, delivery: DeliveryConfig) -> float:
        """Record publish number ``attempt`` of ``report_id``; returns the wait before the next one."""
        wait = backoff(attempt, delivery, self.rng)
        self.due_at[report_id] = now + wait
        return wait
