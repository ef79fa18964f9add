"""Quick commands: `defender-agent --help`, `status` and `check` as whole processes against `python -c pass`.

Each command is the venv's installed `defender-agent` program (what an operator runs), a
fresh process per run; the baseline is `python -c pass` of the same interpreter, in the
same rounds: pass, --help, status, check, pass, --help, ... (interleaved, so load on the
shared machine hits both). Wall time from just before the fork to os.wait4's return; max
RSS is ``ru_maxrss`` of that child from os.wait4 (KiB on Linux). Figures are medians over
the rounds. `status` reads a state_dir holding an outbox with 50 settled reports and 1
pending; `check` validates a config with the rig's four collectors and a real PKI
(mutual-TLS context built with awscrt, as `run` builds it first).

Goal (issue 15): each at most 25 MB max RSS and at most 5x the wall time of `python -c pass`.
One more run per command with PYTHONPROFILEIMPORTTIME=1 names where the time goes (the
``imports`` of each in benchmarks/results/cli.json: the heaviest imports by cumulative time).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

from benchmarks.common import WORK_DIR, Figure, log
from devkit.rig import COLLECTORS  # the rig's collectors: the agent benchmark's config

RSS_LIMIT_MB = 25.0
WALL_LIMIT = 5.0


def plain_env() -> Dict[str, str]:
    """This environment without PYTHON* and coverage settings: the process an operator starts."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "COV_", "COVERAGE"))}


def program() -> List[str]:
    """The installed console script next to this interpreter, else ``python -m agent``."""
    script = Path(sys.executable).parent / "defender-agent"
    return [str(script)] if script.exists() else [sys.executable, "-m", "agent"]


# The measuring parent: a bare `python -S` that posix_spawns the command and reads os.wait4. Linux records
# a process's peak RSS at exec from the address space it came from (with vfork, the parent's), so a child
# of this benchmark's driver (18 MB and more) would report at least the driver's peak; the spawner's own
# peak is about 8 MB, below `python -c pass`. `floor` in cli.json is what /bin/true reports through it.
SPAWNER = """\
import os, sys, time
argv = sys.argv[1:]
null = [(os.POSIX_SPAWN_OPEN, fd, os.devnull, os.O_RDWR, 0) for fd in (0, 1, 2)]
started = time.perf_counter()
pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=null)
_, status, usage = os.wait4(pid, 0)
print(time.perf_counter() - started, usage.ru_maxrss, os.waitstatus_to_exitcode(status))
"""


def timed(argv: List[str], cwd: Path, env: Dict[str, str]) -> Tuple[float, int, int]:
    """(wall seconds, max RSS KiB, exit status) of one whole process, spawned by :data:`SPAWNER`."""
    done = subprocess.run([sys.executable, "-S", "-c", SPAWNER, *argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120, check=True)
    wall, rss, code = done.stdout.split()
    return float(wall), int(rss), int(code)


def heaviest_imports(argv: List[str], cwd: Path, env: Dict[str, str], top: int = 8) -> List[Tuple[str, float]]:
    """The top-level imports of one run by cumulative time (CPython's import log), in ms."""
    done = subprocess.run(argv, cwd=cwd, env={**env, "PYTHONPROFILEIMPORTTIME": "1"}, capture_output=True,
                          text=True, timeout=60, check=False)
    rows: List[Tuple[str, float]] = []
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            _, cumulative, name = line.split("|")
            if not name.startswith("  ") and cumulative.strip().isdigit():  # depth 0: " name"
                rows.append((name.strip(), int(cumulative) / 1000.0))
    return sorted(rows, key=lambda r: -r[1])[:top]


# Where the time of `status` and `check` goes: each step imports the one before it plus one layer, in a
# fresh `python -c` (wall and max RSS as above); the step's cost is its difference to the step before.
IMPORT_STEPS = (
    ("interpreter (`python -c pass`)", "pass"),
    ("+ agent.cli (argparse, logging, dataclasses)", "import agent.cli"),
    ("+ YAML and the config schema (agent.config.spec, yamlsrc)", "import agent.cli, agent.config.spec, "
     "agent.config.yamlsrc"),
    ("+ the config loader (agent.config.load: every built-in collector, psutil)",
     "import agent.cli, agent.config.load"),
    ("+ building collectors (agent.collectors.build): all `check` imports but awscrt", "import agent.cli, "
     "agent.config.load, agent.collectors.build"),
    ("+ awscrt.io (the TLS context): all `check` imports", "import agent.cli, agent.config.load, "
     "agent.collectors.build, agent.mqtt.link, awscrt.io"),
    ("all `status` imports (agent.cli, the config source, the outbox reader; no config loader), "
     "instead of the steps above", "import agent.cli, agent.config.source, agent.commands.status_view"),
    ("`python -c 'import importlib.metadata'` (agent.collectors.registry imports it only for plugins), "
     "instead of the steps above", "import importlib.metadata"),
)


def _setup(work: Path) -> Dict[str, List[str]]:
    """A PKI, a config naming it, a state_dir with a used outbox; the commands to time."""
    import logging

    from agent.catalog import PayloadFormat
    from agent.outbox.store import Outbox, Pending, ReportOutcome
    from devkit.certs import make_pki

    pki = make_pki(work / "pki")
    device = pki.client("cli-gw")
    state = work / "state"
    config = work / "agent.yaml"
    config.write_text(
        f"thing_name: cli-gw\nmqtt:\n  endpoint: 127.0.0.1\n  port: 8883\n  cert: {device.cert}\n  key: {device.key}\n"
        f"  ca: {pki.ca}\nreport:\n  interval: 300s\n  format: cbor\n  key_names: short\nstate_dir: {state}\n"
        + COLLECTORS, encoding="utf-8")
    config.chmod(0o600)
    quiet = logging.getLogger("bench.cli")
    quiet.setLevel(logging.ERROR)
    box = Outbox.open(state, quiet)
    try:
        first = int(time.time()) - 100_000
        with box.transaction():
            for i in range(51):
                box.add(Pending.new(first + i * 300, PayloadFormat.CBOR, b"\xa0" * 300, float(first + i * 300), None))
            for i in range(50):
                outcome = ReportOutcome.ACCEPTED if i % 10 else ReportOutcome.REJECTED
                box.finish(first + i * 300, outcome, None, None, float(first + i * 300 + 1))
    finally:
        box.close()
    prog = program()
    return {
        "pass": [sys.executable, "-c", "pass"],
        "--help": [*prog, "--help"],
        "status": [*prog, "status", "--config", str(config)],
        "check": [*prog, "check", "--config", str(config)],
    }


def run(quick: bool = False) -> Dict[str, Any]:
    work = WORK_DIR / "cli"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    commands = _setup(work)
    env = plain_env()
    rounds = 3 if quick else 15
    floor_kib = timed(["/bin/true"], work, env)[1]
    samples: Dict[str, List[Tuple[float, int]]] = {name: [] for name in commands}
    for argv in commands.values():  # warm-up: page cache, .pyc files
        _, _, code = timed(argv, work, env)
        if code != 0:
            raise RuntimeError(f"{' '.join(argv)} exited {code}")
    steps: Dict[str, List[Tuple[float, int]]] = {label: [] for label, _ in IMPORT_STEPS}
    for _ in range(rounds):
        for name, argv in commands.items():
            wall, rss, code = timed(argv, work, env)
            if code != 0:
                raise RuntimeError(f"{' '.join(argv)} exited {code}")
            samples[name].append((wall, rss))
        for label, code_text in IMPORT_STEPS:
            wall, rss, _ = timed([sys.executable, "-c", code_text], work, env)
            steps[label].append((wall, rss))
    med = {name: (statistics.median(w for w, _ in runs), statistics.median(r for _, r in runs) / 1024.0)
           for name, runs in samples.items()}
    base_wall, base_rss = med["pass"]
    figures: List[Figure] = []
    imports: Dict[str, List[Tuple[str, float]]] = {}
    for name in ("--help", "status", "check"):
        wall, rss = med[name]
        imports[name] = heaviest_imports(commands[name], work, env)
        shown = " ".join(commands[name][1:]).replace(str(work), "WORK")
        figures.append(Figure(f"`{name}` max RSS", "MB", rss, base_rss,
                              f"`python -c pass` max RSS; `{shown}`, median of {rounds}",
                              f"at most {RSS_LIMIT_MB:.0f} MB", judged="value", limit=RSS_LIMIT_MB))
        figures.append(Figure(f"`{name}` wall time vs `python -c pass`", "s", wall, base_wall,
                              f"`python -c pass`, same rounds, median of {rounds}",
                              f"at most {WALL_LIMIT:.0f}x", limit=WALL_LIMIT))
        log(f"  cli: {name}: {wall * 1e3:.0f} ms ({wall / base_wall:.2f}x), {rss:.1f} MB max RSS")
    previous: Tuple[float, float] = (0.0, 0.0)
    step_rows: List[Dict[str, Any]] = []
    for label, code_text in IMPORT_STEPS:
        wall = statistics.median(w for w, _ in steps[label])
        rss = statistics.median(r for _, r in steps[label]) / 1024.0
        base = "pass" if code_text == "pass" else None
        step_rows.append({"step": label, "code": code_text, "wall_s": round(wall, 4), "max_rss_mb": round(rss, 2),
                          "wall_vs_pass": round(wall / base_wall, 2)})
        if base is None and "instead of" not in label:  # a step on top of the one before
            step_rows[-1].update(adds_s=round(wall - previous[0], 4), adds_mb=round(rss - previous[1], 2))
        if "instead of" not in label:
            previous = (wall, rss)
    notes = [f"Heaviest imports of `{name}` (PYTHONPROFILEIMPORTTIME, cumulative, one run): "
             + ", ".join(f"{m} {ms:.0f} ms" for m, ms in rows) for name, rows in imports.items()]
    notes.append(f"Max RSS through the spawner has a floor of {floor_kib / 1024.0:.1f} MB (/bin/true), below "
                 f"`python -c pass` ({base_rss:.1f} MB), so no figure here is the spawner's.")
    notes.append("Import steps (fresh `python -c`, median of the rounds; wall, max RSS, wall against `pass`): "
                 + "; ".join(f"{r['step']}: {r['wall_s'] * 1e3:.0f} ms, {r['max_rss_mb']:.1f} MB, "
                             f"{r['wall_vs_pass']:.2f}x" for r in step_rows))
    extra = {"rounds": rounds, "import_steps": step_rows, "program": commands["--help"][0], "floor_kib": floor_kib,
             "medians": {n: {"wall_s": round(w, 4), "max_rss_mb": round(r, 2)} for n, (w, r) in med.items()},
             "samples": {n: [(round(w, 4), r) for w, r in runs] for n, runs in samples.items()},
             "imports": imports, "notes": notes}
    return {"figures": figures, "extra": extra}
