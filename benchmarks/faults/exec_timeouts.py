"""Scenario ``exec_timeouts``: exec collectors that always time out, 20 per round, must leave no process.

Each run starts a shell that forks two sleeping children and waits; the 0.1 s timeout must kill the
whole process group, children included.

Repeats tests/collectors/test_exec_collector.py::test_timeout_kills_the_whole_process_group (one
run, the collector alone) at scale: 1,000 timeouts through the Sampler, 20 collectors at once.
"""

from __future__ import annotations

from benchmarks.faults.exec_sampler import exec_collectors
from benchmarks.faults.harness import Scenario, scenario

HANG = "sleep 30 & sleep 30 & wait"
PER_ROUND = 20
GOAL = (  # the record's promise; {count} is the number of runs
    "{count:,} exec-collector timeouts (a shell with two sleeping children, timeout 0.1 s, "
    f"{PER_ROUND} collectors per round): 0 orphan processes"
)


@scenario("exec collector timeouts", (100, 1000), GOAL)
def run(sc: Scenario, count: int) -> None:
    with exec_collectors(sc, PER_ROUND, HANG, "100ms", settle=5) as execs:
        while sc.runs < count:
            round_ = execs.sampler.sample_all()
            for failure in round_.failures:
                sc.runs += 1
                sc.count("timed out" if "timed out" in failure.reason else f"other: {failure.reason[:60]}")
                if "timed out" not in failure.reason:
                    sc.fail(f"{failure.collector}: {failure.reason}")
            for sample in round_.samples:
                sc.runs += 1
                sc.fail(f"{sample.name}: a sample from a program that should have timed out")
    if execs.left:
        sc.examples.append(f"orphans left: pids {execs.left[:20]}")
