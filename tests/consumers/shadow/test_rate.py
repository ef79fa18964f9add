"""The pace of shadow updates: urgent changes soon, routine ones at most once per max(60 s, interval)."""

from __future__ import annotations

from agent.consumers.shadow.rate import (
    ROUTINE_MIN,
    URGENT_BURST,
    URGENT_REFILL,
    URGENT_SPACING,
    Pace,
    max_updates,
)


def simulate(seconds: int, interval: float, urgent_every: int) -> int:
    """Updates sent when something changes every second: urgently every ``urgent_every`` s (0: never)."""
    pace = Pace(interval)
    sent = 0
    for now in range(seconds):
        routine = not (urgent_every and now % urgent_every == 0)
        if now >= pace.due_at(routine, now):
            pace.sent(now, routine)
            sent += 1
    return sent


def test_a_1s_interval_with_only_routine_changes_is_one_update_a_minute() -> None:
    assert simulate(600, 1.0, 0) == 600 // int(ROUTINE_MIN)
    assert simulate(3000, 300.0, 0) == 10  # the default interval: one routine update per report


def test_urgent_changes_go_at_once_then_at_the_refill_rate() -> None:
    pace = Pace(1.0)
    assert pace.due_at(False, 0.0) == float("-inf")
    pace.sent(0.0, False)
    assert pace.due_at(False, 1.0) == URGENT_SPACING
    assert pace.due_at(True, 1.0) == ROUTINE_MIN
    flapping = simulate(600, 1.0, 1)
    assert flapping <= URGENT_BURST + 600 / URGENT_REFILL + 1
    assert flapping <= max_updates(600, 1.0)


def test_a_rejection_backs_off_and_an_accept_resets() -> None:
    pace = Pace(300.0)
    pace.sent(0.0, False)
    pace.rejected(1.0)
    assert pace.due_at(False, 1.0) == 6.0
    pace.rejected(6.0)
    assert pace.due_at(False, 6.0) == 16.0
    pace.accepted()
    pace.sent(20.0, False)
    assert pace.due_at(False, 20.0) == 25.0
