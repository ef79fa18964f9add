"""What every fault scenario shares: the record it returns, the seed, and a wall-clock guard.

A scenario module declares its body with ``@scenario(name, (short runs, full runs), goal)``, which
makes it the module's ``run(short: bool) -> Scenario``; :mod:`benchmarks.faults.cli` runs them in
order and writes the records. ``feed`` is the loop of the generated-input scenarios (configs,
replies): each input under the guard, the outcome counted, a hang or an exception a failure.
"""

from __future__ import annotations

import functools
import signal
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, TypeVar

SEED = 20260808  # each scenario draws from SEED + its own offset, so one can be replayed alone
T = TypeVar("T")


@dataclass
class Scenario:
    name: str
    goal: str
    runs: int = 0
    lost: int = 0  # reports or ids lost, processes orphaned: whatever "lost" means for the scenario
    failures: int = 0  # tracebacks, crashes, hangs
    status: str = ""  # "passed", "failed", "not run"
    reason: str = ""
    recovery_seconds: Optional[float] = None
    outcomes: Dict[str, int] = field(default_factory=dict)
    examples: List[str] = field(default_factory=list)  # first few failures, for the record
    seconds: float = 0.0

    def fail(self, example: str) -> None:
        self.failures += 1
        if len(self.examples) < 5:
            self.examples.append(example[-2000:])

    def count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    def not_run(self, reason: str) -> None:
        self.status, self.reason = "not run", reason

    def finish(self) -> Scenario:
        if self.status != "not run":
            self.status = "passed" if self.failures == 0 and self.lost == 0 else "failed"
        return self


Body = Callable[[Scenario, int], None]  # fills in the record for `count` planned runs


def scenario(name: str, runs: Tuple[int, int], goal: str) -> Callable[[Body], Callable[[bool], Scenario]]:
    """Make ``body(sc, count)`` a scenario's ``run(short)``.

    ``runs`` is (short, full): how many runs ``--short`` and the full campaign plan; ``goal`` (the
    record's promise, with ``{count}`` for that number) is formatted once the count is known.
    """

    def decorate(body: Body) -> Callable[[bool], Scenario]:
        @functools.wraps(body)
        def run(short: bool) -> Scenario:
            count = runs[0] if short else runs[1]
            sc = Scenario(name, goal.format(count=count))
            body(sc, count)
            return sc

        return run

    return decorate


class Timeout(Exception):
    """Raised inside a guarded call that ran past its limit."""


def _alarm(_signum: int, _frame: Any) -> None:
    raise Timeout()


def guarded(fn: Callable[[], T], seconds: int = 5) -> T:
    """Run ``fn`` with a wall-clock limit (SIGALRM); a hang is a failure, not a stuck campaign."""
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(seconds)
    try:
        return fn()
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def feed(
    sc: Scenario,
    inputs: Iterable[T],
    call: Callable[[int, T], str],
    hang: Callable[[int, T], str],
    crash: Callable[[int, T, Exception], Tuple[str, str]],
) -> None:
    """Each input to ``call(index, item)`` under the 5 s guard; count the outcome it returns.

    A hang counts as "hang" with the example ``hang(index, item)``; an exception as the outcome and
    example that ``crash(index, item, exc)`` returns (called inside the ``except``, so it may format
    the traceback; the traceback starts here, then ``guarded``, then ``call``).
    """
    for index, item in enumerate(inputs):
        sc.runs += 1
        try:
            outcome = guarded(functools.partial(call, index, item))
        except Timeout:
            sc.fail(hang(index, item))
            outcome = "hang"
        except Exception as exc:
            example, outcome = crash(index, item, exc)
            sc.fail(example)
        sc.count(outcome)
