"""Scenario ``kills``: SIGKILL `defender-agent run` at random points, restart at once; a last clean run
drains, then every report id is accounted for, none reused, ids increasing.

Repeats tests/delivery/test_delivery_process.py::test_twenty_kill9_restarts_account_for_every_id
(20 kills, `make test`) at scale: 100 kills, with the full accounting of live_agent.settle_and_account
(built, published and received ids, not only the received ones) and the drain time as the recovery.
"""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path
from typing import List

from agent.outbox.ids import read_last_id
from benchmarks.faults.harness import SEED, Scenario
from benchmarks.faults.live_agent import on_rig, settle_and_account
from devkit.rig import Rig

GOAL = (  # the record's promise; {count} is the number of runs
    "{count} SIGKILLs of `defender-agent run` at random points (0.2-1.5 s after start, interval 1 s, backlog "
    "newest): every report id accounted for, none reused, ids increasing"
)


@on_rig("agent SIGKILLs", (5, 100), GOAL, work="kills", seed=SEED + 2)
def run(sc: Scenario, count: int, rng: random.Random, rig: Rig, work: Path) -> None:
    state, log_path = work / "state", work / "agent.log"
    cfg = rig.write_config(work / "agent.yaml", state, reply_timeout=1, retry_max_delay=1)
    last: List[int] = []
    for _ in range(count):
        proc = rig.start_agent(cfg, log_path)
        time.sleep(rng.uniform(0.2, 1.5))
        rig.stop_agent(proc, signal.SIGKILL, 5)
        sc.runs += 1
        last.append(read_last_id(state))
    if last != sorted(last):
        sc.fail(f"last_report_id went backwards across kills: {last}")
    settle_and_account(sc, rig, cfg, state, log_path)
    sc.recovery_seconds = sc.outcomes.get("final run: start to drained s")
