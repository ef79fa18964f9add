"""When a pending report goes out again: the backoff, and due times per id."""

from __future__ import annotations

import random

from agent.config.model import BacklogMode, DeliveryConfig
from agent.consumers.defender.resend import ResendClock, backoff


def delivery(**kw: object) -> DeliveryConfig:
    values = dict(backlog=BacklogMode.NEWEST, reply_timeout=2.0, retry_max_delay=30.0, max_attempts=5,
                  max_outbox_bytes=10**6, min_free_disk=0)
    values.update(kw)
    return DeliveryConfig(**values)  # type: ignore[arg-type]


def test_backoff_starts_at_the_reply_timeout_doubles_with_jitter_and_is_capped() -> None:
    d = delivery()
    rng = random.Random(1)
    waits = [backoff(attempt, d, rng) for attempt in range(1, 8)]
    assert waits[0] == 2.0
    for attempt, wait in enumerate(waits[1:], start=2):
        base = min(30.0, 2.0 * 2 ** (attempt - 1))
        assert base <= wait <= min(30.0, base * 1.2), (attempt, wait)
    assert waits[-1] == 30.0


def test_backoff_never_goes_below_the_smaller_bound() -> None:
    rng = random.Random(2)
    d = delivery(reply_timeout=10.0, retry_max_delay=4.0)  # a cap under the timeout wins
    assert [backoff(a, d, rng) for a in (1, 2, 5)] == [4.0, 4.0, 4.0]


def test_due_is_oldest_first_and_forget_removes() -> None:
    clock = ResendClock(random.Random(3))
    clock.schedule_all([30, 10, 20], at=5.0)
    clock.schedule(40, at=9.0)
    assert clock.due(5.0) == [10, 20, 30] and clock.next_deadline() == 5.0
    clock.forget_all([10, 20, 30])
    clock.forget(99)  # unknown: nothing happens
    assert clock.due(8.0) == [] and clock.next_deadline() == 9.0 and len(clock) == 1


def test_sent_returns_the_wait_and_moves_the_due_time() -> None:
    clock = ResendClock(random.Random(4))
    clock.schedule(7, at=0.0)
    assert clock.sent(7, now=100.0, attempt=1, delivery=delivery()) == 2.0
    assert clock.due_at[7] == 102.0
