"""What the scenarios with a running `defender-agent run` share (kills, broker, cuts, disk_full, corrupt).

``work_dir`` gives each a fresh benchmarks/work/faults/<name> (or marks it "not run" without
mosquitto); ``@on_rig`` is ``@scenario`` for a body that runs on a rig started there;
``agent_under_fault`` starts the agent, waits for its first accepted report, hands it to the
scenario's fault loop and afterwards drains and accounts; ``settle_and_account`` is that last step:
a clean run drains the outbox, then every report id is checked against the ledger.
"""

from __future__ import annotations

import contextlib
import functools
import random
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional, Tuple

from benchmarks.common import WORK_DIR
from benchmarks.faults.harness import Scenario, scenario
from devkit.broker import find_mosquitto
from devkit.rig import Rig, accepted_count, account, ledger, pending_ids, wait_until


def work_dir(sc: Scenario, name: str) -> Optional[Path]:
    """A fresh benchmarks/work/faults/<name>; None, with ``sc`` marked "not run", without mosquitto."""
    if find_mosquitto() is None:
        sc.not_run("mosquitto is not installed")
        return None
    work = WORK_DIR / "faults" / name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    return work


RigBody = Callable[[Scenario, int, random.Random, Rig, Path], None]


def on_rig(name: str, runs: Tuple[int, int], goal: str, *, work: str, seed: int,
           ) -> Callable[[RigBody], Callable[[bool], Scenario]]:
    """``@scenario(name, runs, goal)`` for a body ``(sc, count, rng, rig, work)`` that runs on a rig
    (PKI, mosquitto, responder) started in benchmarks/work/faults/<work>, with ``random.Random(seed)``."""

    def decorate(body: RigBody) -> Callable[[bool], Scenario]:
        @functools.wraps(body)
        def rigged(sc: Scenario, count: int) -> None:
            rng = random.Random(seed)
            work_path = work_dir(sc, work)
            if work_path is not None:
                with Rig(work_path) as rig:
                    body(sc, count, rng, rig, work_path)

        return scenario(name, runs, goal)(rigged)

    return decorate


def settle_and_account(sc: Scenario, rig: Rig, cfg: Path, state: Path, log_path: Path) -> None:
    """A final clean run drains what is left; then every id is checked against the ledger."""
    before = max(ledger(state) or [0])
    t0 = time.monotonic()
    proc = rig.start_agent(cfg, log_path)
    try:
        # Drained: nothing pending and a report built by this clean run accepted (it really ran).
        drained = wait_until(lambda: not pending_ids(state) and any(
            r > before and o == "accepted" for r, o in ledger(state).items()), 60, 0.1)
        sc.outcomes["final run: start to drained s"] = round(time.monotonic() - t0, 1)  # type: ignore[assignment]
        if not drained:
            sc.fail(f"the final clean run did not drain the outbox in 60 s: pending {pending_ids(state)[:10]}")
    finally:
        rig.stop_agent(proc)
    text = log_path.read_text(errors="replace")
    acc = account(state, text, rig.responder)
    for outcome, n in acc["ledger"].items():
        sc.outcomes[f"ids {outcome}"] = n
    sc.outcomes["ids built"] = acc["built"]
    sc.outcomes["ids left pending"] = acc["pending"]
    sc.lost = len(acc["lost"])
    if acc["lost"]:
        sc.examples.append(f"ids in neither ledger nor outbox: {acc['lost'][:20]}")
    if acc["conflicts"]:
        sc.fail(f"ids sent with two different payloads (reused): {acc['conflicts'][:10]}")
    if not acc["published_order_ok"]:
        sc.fail("ids did not increase in the order the agent first published them")
    if acc["inversions"]:
        sc.outcomes["ids first seen by the responder after a higher id (resent after the broker dropped them)"] = (
            acc["inversions"])
    if not acc["built_order_ok"]:
        sc.fail("the ids the agent built did not strictly increase across restarts")
    if acc["tracebacks"]:
        sc.fail(f"{acc['tracebacks']} traceback(s) in the agent log: {text[text.find('Traceback'):][:1500]}")


def recovery(sc: Scenario, times: List[float]) -> None:
    """The median recovery as the scenario's figure, the slowest as an outcome."""
    if times:
        times = sorted(times)
        sc.recovery_seconds = round(times[len(times) // 2], 2)
        sc.outcomes["recovery max s"] = round(times[-1], 2)  # type: ignore[assignment]


@dataclass
class Running:
    """One `defender-agent run` under a fault loop; ``times`` collects its recoveries."""

    sc: Scenario
    state: Path
    log_path: Path
    proc: subprocess.Popen[bytes]
    times: List[float] = field(default_factory=list)

    def accepted(self) -> int:
        return accepted_count(self.state)

    def recovered(self, done: Callable[[], Any], since: float, limit: float) -> Optional[float]:
        """Seconds from ``since`` until ``done()`` holds, kept in ``times``; None if not within ``limit`` s."""
        if not wait_until(done, limit, 0.05):
            return None
        took = time.monotonic() - since
        self.times.append(took)
        return took

    def next_accepted(self, before: int, since: float, limit: float) -> bool:
        """More than ``before`` reports accepted within ``limit`` s; the time from ``since`` is kept."""
        return self.recovered(lambda: accepted_count(self.state) > before, since, limit) is not None

    def exited(self, label: str, context: str = "") -> bool:
        """True, and a failure, if the agent is no longer running."""
        if self.proc.poll() is None:
            return False
        self.sc.fail(f"{label}: the agent exited with {self.proc.returncode}{context}")
        return True


@contextlib.contextmanager
def agent_under_fault(sc: Scenario, rig: Rig, work: Path, before: str, **overrides: Any) -> Iterator[Running]:
    """The agent (work/agent.yaml, state work/state, log work/agent.log) for the body's fault loop.

    Before the body: its first report accepted (else a failure "no report accepted before <before>").
    After it: the agent stopped, a clean run drains and every id is accounted, the recoveries recorded.
    ``overrides`` go to ``Rig.write_config`` (``port``, ``backlog``, ``reply_timeout``, ...).
    """
    state, log_path = work / "state", work / "agent.log"
    cfg = rig.write_config(work / "agent.yaml", state, **overrides)
    running = Running(sc, state, log_path, rig.start_agent(cfg, log_path))
    try:
        if not wait_until(lambda: accepted_count(state) >= 1, 20, 0.1):
            sc.fail(f"no report accepted before {before}")
        yield running
    finally:
        rig.stop_agent(running.proc)
    settle_and_account(sc, rig, cfg, state, log_path)
    recovery(sc, running.times)
