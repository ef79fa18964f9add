"""Cost per round of the security collectors (file_integrity, packages, kernel_modules, accounts) on
realistic sizes, as a ratio to the standard report cycle.

Baseline: one report cycle of the ``full`` profile (benchmarks/ours.py: the collectors of
config/agent.example.yaml, the checks and the encoding, and the outbox write when on the branch), measured
in the same process, interleaved round by round with each collector's ``collect()``:

- ``file_integrity``: 200 watched files of 2 KiB (a gateway's /etc is about that), a round with no change
  (a ``stat`` per file) and a round in which one file changed (one file hashed again); and a directory of
  10,000 files at the default caps, no change.
- ``packages``: a dpkg database of 1,500 packages (about 1.3 MB, shaped like Debian's), a round with no
  package activity (two ``stat`` calls) and a round after dpkg rewrote the database (a full parse).
- ``kernel_modules``: a ``/proc/modules`` of 100 modules.
- ``accounts``: an ``/etc/passwd`` of 40 accounts and Debian's ``/etc/shells``.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, List

from benchmarks.common import Figure, interleaved, log, not_measured
from benchmarks.ours import Cycle, NotAvailable, failures_of, quiet_logger

GOAL_STEADY = "a round without changes at most 0.5x the standard report cycle"
GOAL_CHANGED = "context: a round that re-reads its source after a change"
GOAL_WORST = "context: the file cap's worst case, which must not stall the round (a collector's timeout is 10 s)"
STEADY_LIMIT = 0.5


def _ctx(state: Path, logger: logging.Logger) -> Any:
    from agent.collectors.contract import BuildContext

    return BuildContext(name="bench", state_dir=state, timeout=10, report_interval=300, max_list_items=5000,
                        logger=logger)


def _setups(work: Path, logger: logging.Logger) -> Dict[str, Callable[[], Any]]:
    """name -> one round of that collector (with what the round needs done before it)."""
    from agent.collectors.security import accounts, integrity, modules, packages
    from devkit.security_fixtures import PROC_MODULES, dpkg_status, watched_tree, write_admin_dir

    out: Dict[str, Callable[[], Any]] = {}
    etc = work / "etc"
    files = watched_tree(etc, 200, size=2048, per_dir=50)
    options = {"paths": (str(etc),), "exclude": (), "max_files": integrity.DEFAULT_MAX_FILES,
               "max_bytes": integrity.DEFAULT_MAX_BYTES, "metrics": None}
    steady = integrity.SPEC.build(_ctx(work / "s1", logger), options)
    steady.collect()
    out["file_integrity, 200 files, no change"] = steady.collect
    changing = integrity.SPEC.build(_ctx(work / "s2", logger), options)
    changing.collect()
    flip = [0]

    def one_changed() -> Any:
        flip[0] ^= 1
        files[7].write_bytes((b"a" if flip[0] else b"b") * 2048)
        return changing.collect()

    out["file_integrity, 200 files, one changed"] = one_changed
    many = work / "many"
    watched_tree(many, 10_000, size=1024, per_dir=10_000)
    big = integrity.SPEC.build(_ctx(work / "s3", logger), {**options, "paths": (str(many),)})
    for _ in range(3):
        big.collect()  # the baseline's hashes filled in
    out["file_integrity, 10,000 files in one directory, no change"] = big.collect

    admin = write_admin_dir(work / "dpkg", dpkg_status(1500))
    pk = packages.SPEC.build(_ctx(work / "s4", logger), {"admin_dir": str(admin), "metrics": None})
    pk.collect()
    out["packages, 1,500 packages, no change"] = pk.collect
    pk2 = packages.SPEC.build(_ctx(work / "s5", logger), {"admin_dir": str(admin), "metrics": None})
    pk2.collect()
    tick = [0]

    def rewritten() -> Any:
        tick[0] += 1
        os.utime(admin / "status", ns=(tick[0], tick[0]))  # dpkg rewrote it: the next round parses it
        return pk2.collect()

    out["packages, 1,500 packages, database rewritten"] = rewritten

    proc = work / "proc"
    proc.mkdir()
    lines = PROC_MODULES.splitlines()
    (proc / "modules").write_text("\n".join(lines + [f"mod{i:03d} 16384 0 - Live 0x0" for i in range(100 - len(lines))]) + "\n")
    km = modules.SPEC.build(_ctx(work / "s6", logger), {"proc_root": str(proc), "metrics": None})
    out["kernel_modules, 100 modules"] = km.collect

    passwd = work / "passwd"
    passwd.write_text("".join(f"user{i}:x:{1000 + i}:{1000 + i}::/home/user{i}:{'/bin/bash' if i % 4 else '/usr/sbin/nologin'}\n"
                              for i in range(39)) + "root:x:0:0:root:/root:/bin/bash\n")
    shells = work / "shells"
    shells.write_text("# /etc/shells\n/bin/sh\n/usr/bin/sh\n/bin/bash\n/usr/bin/bash\n/bin/rbash\n/bin/dash\n")
    ac = accounts.SPEC.build(_ctx(work / "s7", logger), {"passwd": str(passwd), "shells": str(shells), "metrics": None})
    out["accounts, 40 accounts"] = ac.collect
    return out


def run(quick: bool = False) -> Dict[str, Any]:
    number, repeats = (3, 3) if quick else (10, 9)
    work = Path(tempfile.mkdtemp(prefix="defender-bench-security-"))
    logger = quiet_logger()
    try:
        try:
            cycle = Cycle("json", "long", profile="full")
        except NotAvailable as exc:
            return {"figures": [not_measured("security collectors per round", GOAL_STEADY, str(exc))]}
        try:
            cycle.run()
            if failures_of(cycle):
                raise RuntimeError(f"collectors failed in the standard cycle: {failures_of(cycle)}")
            setups = _setups(work, logger)
            figures: List[Figure] = []
            table = []
            for name, fn in setups.items():
                got = interleaved({"standard": cycle.run, "collector": fn}, number, repeats)
                worst = "10,000" in name
                steady = not worst and ("no change" in name or name.startswith(("kernel_modules", "accounts")))
                figure = Figure(
                    name=f"{name}: one round vs the standard report cycle",
                    unit="s",
                    value=got["collector"]["median"],
                    baseline=got["standard"]["median"],
                    baseline_name="one report cycle of the full profile (json long)",
                    goal=GOAL_STEADY if steady else GOAL_WORST if worst else GOAL_CHANGED,
                    limit=STEADY_LIMIT if steady else None,
                    extra={"min": got["collector"]["min"], "baseline_min": got["standard"]["min"],
                           "calls_per_round": number, "rounds": repeats,
                           "includes_outbox_write": cycle.includes_outbox},
                ).judge()
                figures.append(figure)
                table.append({"name": name, **got})
                log(f"  {name}: {got['collector']['median'] * 1e3:.3f} ms vs cycle "
                    f"{got['standard']['median'] * 1e3:.3f} ms ({figure.ratio or 0:.2f}x)")
        finally:
            cycle.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"figures": figures, "extra": {"table": table}}
