"""Scenario ``broker``: kill and restart mosquitto under a running agent; recovery is the
time from the broker being back until the next report is accepted; afterwards every id is accounted.

Repeats tests/delivery/test_delivery_broker.py::test_twenty_broker_restarts_lose_nothing (20 quick
restarts of an in-process service, `make test`) at scale against `defender-agent run`: 50 restarts,
longer outages, the recovery time of each restart, and the full id accounting.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

from benchmarks.faults.harness import SEED, Scenario
from benchmarks.faults.live_agent import agent_under_fault, on_rig
from devkit.rig import Rig

GOAL = (  # the record's promise; {count} is the number of runs
    "{count} broker restarts (SIGKILL, down 0-1.5 s, up 0.5-2 s): every report id accounted "
    "for; recovery = broker back until the next report is accepted"
)


@on_rig("broker restarts", (3, 50), GOAL, work="broker", seed=SEED + 3)
def run(sc: Scenario, count: int, rng: random.Random, rig: Rig, work: Path) -> None:
    with agent_under_fault(sc, rig, work, "the first restart", reply_timeout=1,
                           retry_max_delay=1) as agent:
        for i in range(count):
            time.sleep(rng.uniform(0.5, 2.0))
            rig.broker.restart(down_for=rng.uniform(0.0, 1.5))
            back = time.monotonic()
            before = agent.accepted()
            sc.runs += 1
            if not agent.next_accepted(before, back, 20):
                sc.fail(f"restart #{i}: no report accepted within 20 s of the broker coming back")
            if agent.exited(f"restart #{i}"):
                break
