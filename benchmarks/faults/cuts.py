"""Scenario ``cuts``: cuts, stalls and half-open connections through a TCP proxy between the agent and
mosquitto; recovery is the time from the fault being lifted until the next report is accepted;
afterwards every id is accounted (the final clean run connects through the restored proxy, as
configured, so the proxy is closed only after it).

Overlaps tests/delivery/test_delivery_broker.py::test_stalled_connection_recovers and the two
backlog-after-outage tests there (one stall or cut each, in-process); what this adds is the half-open
connection, many faults in a row against `defender-agent run`, the recovery time of each, and the
full id accounting.
"""

from __future__ import annotations

import contextlib
import random
import time
from pathlib import Path

from benchmarks.faults.harness import SEED, Scenario
from benchmarks.faults.live_agent import agent_under_fault, on_rig
from devkit.proxy import Proxy
from devkit.rig import Rig

HOLD = {"cut": (0.2, 2.0), "stall": (0.5, 3.0), "half-open": (1.0, 4.0)}  # seconds a fault lasts
GOAL = (  # the record's promise; {count} is the number of runs
    "{count} faults through the TCP proxy, a third each: cut (connections dropped, new ones refused, "
    "0.2-2 s), stall (bytes held 0.5-3 s), half-open (bytes swallowed, no FIN, 1-4 s, then reset): every "
    "report id accounted for; recovery = fault lifted until the next report is accepted"
)


def _start(proxy: Proxy, kind: str) -> None:
    if kind == "cut":
        proxy.cut()  # connections dropped, new ones refused
    elif kind == "stall":
        proxy.stall()  # bytes held
    else:
        proxy.blackhole()  # bytes swallowed, no FIN; reset when restored


@on_rig("connection cuts and stalls", (3, 50), GOAL, work="cuts", seed=SEED + 4)
def run(sc: Scenario, count: int, rng: random.Random, rig: Rig, work: Path) -> None:
    with contextlib.closing(Proxy(rig.broker.port)) as proxy, agent_under_fault(
            sc, rig, work, "the first fault", port=proxy.port, keep_alive=5, reply_timeout=1,
            retry_max_delay=1) as agent:
        kinds = ["cut", "stall", "half-open"] * (count // 3 + 1)
        rng.shuffle(kinds)
        for i, kind in enumerate(kinds[:count]):
            time.sleep(rng.uniform(0.3, 1.5))
            _start(proxy, kind)
            time.sleep(rng.uniform(*HOLD[kind]))
            before = agent.accepted()
            proxy.restore()
            lifted = time.monotonic()
            sc.runs += 1
            sc.count(kind)
            if not agent.next_accepted(before, lifted, 30):
                sc.fail(f"fault #{i} ({kind}): no report accepted within 30 s after it was lifted")
            if agent.exited(f"fault #{i}"):
                break
