"""Scenario ``corrupt``: damage one state file, then `defender-agent run --reports 1` must start and send.

The files cycle through outbox.sqlite3, report_id_reserve and the network_stats counter file, each
truncated, zeroed or overwritten with random bytes, on a copy of one pristine state (a device of its
own each time). An unreadable outbox is moved aside and counted; new ids stay above every earlier one.

Overlaps tests/delivery/test_delivery_corrupt_process.py (the outbox garbage, truncated or zeroed
under a real run, `make test`) and tests/delivery/test_delivery_fsync.py::
test_run_keeps_ids_increasing_across_a_corrupt_outbox; what this adds is the id reserve and the
network counter file, and the check that an outbox SQLite can still read is kept without losing rows.
"""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

from benchmarks.faults.harness import SEED, Scenario
from benchmarks.faults.live_agent import on_rig
from devkit.rig import Rig, account, built_ids, counters, ledger

FILES = ["outbox.sqlite3", "report_id_reserve", "network-counters.network_stats.json"]
KINDS = ["truncated", "zeroed", "random bytes"]
GOAL = (  # the record's promise; {count} is the number of runs
    "{count} damaged state files, cycling outbox.sqlite3, report_id_reserve and the network_stats counter "
    "file, each truncated, zeroed or overwritten with random bytes: the agent starts and sends (`run "
    "--reports 1`), an unreadable outbox is moved aside and counted, new ids stay above every earlier one"
)


def _damage(path: Path, kind: str, rng: random.Random) -> None:
    size = path.stat().st_size
    if kind == "truncated":
        with open(path, "r+b") as handle:
            handle.truncate(rng.randrange(0, max(1, size)))
    elif kind == "zeroed":
        path.write_bytes(b"\0" * size)
    else:
        path.write_bytes(bytes(rng.getrandbits(8) for _ in range(max(size, 64))))


@on_rig("corrupt state files", (6, 50), GOAL, work="corrupt", seed=SEED + 5)
def run(sc: Scenario, count: int, rng: random.Random, rig: Rig, work: Path) -> None:
    pristine = work / "pristine"
    cfg0 = rig.write_config(work / "pristine.yaml", pristine)
    first = rig.start_agent(cfg0, work / "pristine.log", "--reports", "3")
    first.wait(60)
    for i in range(count):
        name, kind = FILES[i % 3], KINDS[(i // 3) % 3]
        state = work / f"run-{i:02d}"
        shutil.copytree(pristine, state)
        before = account(state, "", None)["ledger"]
        prior_max = max(ledger(state) or [0])
        _damage(state / name, kind, rng)
        log_path = work / f"run-{i:02d}.log"
        # Each run starts from a copy of the same state: a device of its own, so a thing name of its own
        # (two copies handing out the same next id under one thing would look like id reuse).
        cfg = rig.write_config(work / f"run-{i:02d}.yaml", state, thing=f"rig-gw-{i:02d}")
        proc = rig.start_agent(cfg, log_path, "--reports", "1")
        sc.runs += 1
        sc.count(f"{name} {kind}")
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            rig.stop_agent(proc)
            sc.fail(f"#{i} {name} {kind}: `run --reports 1` did not finish in 30 s")
            continue
        text = log_path.read_text(errors="replace")
        if proc.returncode != 0 or "Traceback" in text:
            sc.fail(f"#{i} {name} {kind}: exit {proc.returncode}\n{text[-1500:]}")
            continue
        acc = account(state, text, None)
        if acc["ledger"].get("accepted", 0) < 1 or not acc["built"]:
            sc.fail(f"#{i} {name} {kind}: no report accepted after the damage: {acc}")
        if acc["built"] and min(built_ids(text)) <= prior_max:
            sc.fail(f"#{i} {name} {kind}: a new id is not above the earlier ones ({prior_max})")
        moved = sorted(p.name for p in state.glob("*.corrupt*"))
        if name == "outbox.sqlite3":
            if moved and counters(state).get("outbox_corrupt") == 1:
                sc.count("outbox moved aside and counted")
            elif not moved and acc["ledger"].get("accepted", 0) >= 1:
                # SQLite could still read it (e.g. cut to 0 bytes: an empty file is an empty database)
                sc.count("outbox still readable, kept")
                if before and sum(before.values()) > sum(acc["ledger"].values()):
                    sc.count("outbox readable but lost ledger rows")
            else:
                sc.fail(f"#{i} {name} {kind}: moved {moved}, counters {counters(state)}")
        else:
            sc.count(f"{name}: ignored and rewritten (not moved aside, not counted)")
