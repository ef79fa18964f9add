"""Scenario ``disk_full``: state_dir on a 2 MiB tmpfs filled by another process (`dd`) for 3 s under
`defender-agent run`: no crash, no traceback, and a report built after space returns is accepted
within one interval (1 s) plus the round trip (limit 2 s); afterwards every id is accounted.

Overlaps tests/delivery/test_disk_full.py::test_full_state_dir_is_survived_and_writing_resumes (the
same fault, an in-process service with a fake link, `make test`); what this adds is the real
process, broker and responder, the fill by another process, and the id accounting. Needs root (a
tmpfs mount); otherwise recorded as "not run".
"""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import time
from pathlib import Path
from typing import Iterator, Optional

from benchmarks.faults.harness import Scenario, scenario
from benchmarks.faults.live_agent import agent_under_fault, work_dir
from devkit.rig import Rig, built_ids, ledger

GOAL = (  # the record's promise; {count} is the number of runs
    "{count} fill(s) of state_dir (a 2 MiB tmpfs, min_free_disk 0) by another process (dd) for 3 s: no "
    "crash, no traceback, a report built after space returns is accepted within one interval (1 s) plus the "
    "round trip (limit 2 s)"
)


@contextlib.contextmanager
def _small_tmpfs(target: Path) -> Iterator[Optional[str]]:
    """Mount a 2 MiB tmpfs on ``target`` for the body; yields None, or why it could not be mounted."""
    if os.geteuid() != 0:
        yield "mounting a tmpfs needs root"
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(target)], capture_output=True,
                             text=True, check=False, timeout=10)
    if mounted.returncode != 0:
        yield f"mount -t tmpfs not permitted: {mounted.stderr.strip()[:200]}"
        return
    try:
        yield None
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False, timeout=10)


def _accepted_above(state: Path, report_id: int) -> bool:
    return any(r > report_id and o == "accepted" for r, o in ledger(state).items())


@scenario("disk full", (1, 3), GOAL)
def run(sc: Scenario, count: int) -> None:
    work = work_dir(sc, "diskfull")  # not on_rig: the tmpfs is mounted before the rig starts
    if work is None:
        return
    state = work / "state"
    state.mkdir()
    with _small_tmpfs(state) as refused:
        if refused:
            sc.not_run(refused)
            return
        with Rig(work) as rig, agent_under_fault(sc, rig, work, "the disk was filled", reply_timeout=1,
                                                 retry_max_delay=1) as agent:
            for i in range(count):
                filler = state / "filler"
                subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True,
                               check=False, timeout=30)
                time.sleep(3.0)
                sc.runs += 1
                if agent.exited(f"fill #{i}", " while the disk was full"):
                    break
                last_built = max(built_ids(agent.log_path.read_text(errors="replace")) or [0])
                filler.unlink()
                took = agent.recovered(functools.partial(_accepted_above, state, last_built), time.monotonic(), 15)
                if took is None:
                    sc.fail(f"fill #{i}: no new report accepted within 15 s after space returned")
                elif took > 2.0:
                    sc.fail(f"fill #{i}: sending resumed {took:.1f} s after space returned (limit 2 s)")
                time.sleep(1.0)
            sc.outcomes["storage errors logged"] = agent.log_path.read_text(errors="replace").count("Cannot write to")
