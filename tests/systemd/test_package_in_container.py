"""The Debian package under a real systemd 252 (PID 1 of a bookworm container): the shipped unit's promises.

Run by `make systemd-test` (docs/SYSTEMD-TEST.md), which builds the package and names it in
$DEFENDER_AGENT_SYSTEMD_DEB. The tests run in file order and share one container; each one that breaks
the service (signals, key modes, config) restores it in a ``finally``, and the ones that need it
running start it first, so a single test can also be run alone with ``-k``. The package's
removal comes last.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import time
from typing import Any, Callable, Dict, List, Tuple

import pytest
import yaml

from agent.outbox.store import ReportOutcome
from tests.systemd.rig import (
    BOOTSTRAP_UNIT,
    CONFIG,
    DEBIAN_LIBS,
    KEY,
    STATE,
    THING,
    UNIT,
    WATCHDOG_SEC,
    Rig,
    timespan,
)

pytestmark = pytest.mark.skipif(not os.environ.get("DEFENDER_AGENT_SYSTEMD_DEB"),
                                reason="run by `make systemd-test` (needs root, debootstrap, systemd-nspawn)")

Figure = Callable[[str], None]
READY_STATUS = r"(no report yet|last report \d+); \d+ pending; (connecting|connected|disconnected)"
MAX_EXPOSURE = 2.0
HOLD_MARGIN = 5.0  # seconds past RestartSec= during which a unit that must not restart is watched


def spacing(rig: Rig, after: str, reports: int = 4, timeout: float = 40) -> float:
    """Median seconds between the agent's "Built report" journal lines after ``after``."""
    def built() -> List[Tuple[float, str]]:
        found = rig.timed_lines(after, r"Built report \d+ \(")
        return found if len(found) >= reports else []

    lines = rig.wait_for(built, timeout, f"{reports} reports built")
    stamps = [stamp for stamp, _ in lines]
    return float(statistics.median(b - a for a, b in zip(stamps, stamps[1:])))


def holds(rig: Rig, seconds: float, probe: Callable[[], Dict[str, str]], expected: Dict[str, str]) -> None:
    """``probe()`` shows ``expected`` during the whole of ``seconds`` (checked every half second)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        seen = probe()
        assert {k: seen[k] for k in expected} == expected, f"{seen}\n{rig.journal_tail()}"
        time.sleep(0.5)


def failed_for_good(rig: Rig) -> Dict[str, str]:
    """What `systemctl show` says about how the last start ended."""
    return rig.show("ActiveState", "SubState", "Result", "ExecMainCode", "ExecMainStatus", "NRestarts",
                    "ExecMainPID")


def ended(rig: Rig) -> Dict[str, str]:
    """The unit's state once its start failed: ``failed``, or (the thing to catch) waiting to restart."""
    rig.wait_for(lambda: failed_for_good(rig)["SubState"] in ("failed", "auto-restart"), 30,
                 "the start failed")
    state = failed_for_good(rig)
    assert state["ActiveState"] == "failed", f"systemd is going to restart it: {state}\n{rig.journal_tail(8)}"
    return state


def one_outcome_each(rig: Rig) -> Dict[str, Any]:
    """Every report the journal says was built is pending or in the ledger, once; every outcome counted once."""
    box = rig.outbox()
    ledger = [rid for rid, _ in box["ledger"]]
    pending = set(box["pending"])
    assert len(ledger) == len(set(ledger)), "a report id with two outcomes"
    assert not set(ledger) & pending, f"pending and finished at once: {sorted(set(ledger) & pending)}"
    assert sum(box["counters"].get(o, 0) for o in ReportOutcome) == len(ledger), box["counters"]
    built = {int(n) for n in re.findall(r"Built report (\d+) \(", rig.journal())}
    lost = built - set(ledger) - pending
    assert not lost, f"built but neither pending nor finished: {sorted(lost)}"
    box["built"] = len(built)
    return box


# -- 1. the package ---------------------------------------------------------------------------

def test_package_pulls_debians_libraries_and_installs_disabled(rig: Rig, figure: Figure) -> None:
    new = re.search(r"The following NEW packages will be installed:\n((?:\s+.*\n)+)", rig.install_output)
    assert new, rig.install_output[-3000:]
    pulled = set(new.group(1).split())
    assert set(DEBIAN_LIBS) <= pulled, f"not pulled in: {set(DEBIAN_LIBS) - pulled}"
    versions = {lib: rig.sh(["dpkg-query", "-W", "-f=${Version}", lib]).stdout for lib in (*DEBIAN_LIBS, "python3")}
    figure("apt-get install ./deb pulled in " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    boto3 = rig.sh(["dpkg-query", "-W", "-f=${Version}", "python3-boto3"], check=False)
    figure(f"Recommends python3-boto3: {boto3.stdout or 'not installed'}")
    assert rig.after_install == {"is-enabled": "disabled", "is-active": "inactive"}, rig.after_install
    assert "systemctl enable --now defender-agent" in rig.install_output, "postinst names no next step"
    figure(f"right after install: is-enabled {rig.after_install['is-enabled']}, is-active "
           f"{rig.after_install['is-active']}; postinst's next step: `systemctl enable --now defender-agent`")


def test_commands_run_on_debians_python_and_libraries(rig: Rig, figure: Figure) -> None:
    shebang = rig.sh(["head", "-1", "/usr/bin/defender-agent"]).stdout.strip()
    assert shebang == "#!/usr/bin/python3"
    where = json.loads(rig.sh(["python3", "-c", (
        "import json, sys; sys.path.insert(0, '/usr/share/defender-agent'); "
        "import agent, awscrt, cbor2, psutil, yaml; "
        "print(json.dumps({m.__name__: m.__file__ for m in (agent, awscrt, cbor2, psutil, yaml)}))")]).stdout)
    assert where.pop("agent").startswith("/usr/share/defender-agent/")
    assert all(path.startswith("/usr/lib/python3/dist-packages/") for path in where.values()), where
    version = rig.sh(["dpkg-query", "-W", "-f=${Version}", "defender-agent"]).stdout
    took: Dict[str, float] = {}

    def cli(*args: str) -> str:
        start = time.monotonic()
        result = rig.sh(["defender-agent", *args], timeout=60, check=False)
        took[args[0]] = time.monotonic() - start
        assert result.returncode == 0, f"defender-agent {' '.join(args)}: {result.stdout}{result.stderr}"
        return result.stdout + result.stderr

    assert version in cli("--version")
    assert "usage: defender-agent" in cli("--help")
    assert "thing_name" in yaml.safe_load(cli("sample-config"))
    assert f"OK (thing '{THING}'" in cli("check", "--config", CONFIG)
    cli("once", "--config", CONFIG, "--output", "/root/once.json")
    cli("validate", "/root/once.json")
    report = json.loads(rig.sh(["cat", "/root/once.json"]).stdout)
    assert report["header"]["report_id"] > 0 and report["metrics"], report
    figure(f"{shebang}; {', '.join(where)} from /usr/lib/python3/dist-packages; agent from /usr/share/defender-agent")
    figure("seconds per command: " + ", ".join(f"{k} {v:.2f}" for k, v in took.items())
           + f"; `once` report {len(json.dumps(report))} bytes, valid")


# -- 2. start ---------------------------------------------------------------------------------

def test_enable_now_runs_and_sends_ready_status(rig: Rig, figure: Figure) -> None:
    cursor = rig.cursor()
    start = time.monotonic()
    result = rig.sh(["systemctl", "enable", "--now", UNIT], timeout=150, check=False)
    took = time.monotonic() - start
    assert result.returncode == 0, result.stdout + result.stderr + rig.journal_tail()
    assert rig.sh(["systemctl", "is-enabled", UNIT]).stdout.strip() == "enabled"
    assert rig.active(), rig.journal_tail()
    text = rig.show("StatusText")["StatusText"]
    assert re.fullmatch(READY_STATUS, text), text
    status = rig.sh(["systemctl", "status", "--no-pager", "-l", UNIT], check=False).stdout
    line = re.search(rf'Status: "{READY_STATUS}"', status)
    assert line, status
    running = rig.wait_journal(cursor, r"Running: thing '.*', report every .*", 10).group(0)
    rig.wait_for(lambda: rig.show("StatusText")["StatusText"].endswith("; connected"), 30, "connected")
    figure(f"enable --now returned after {took:.1f} s (Type=notify: once READY=1 came); "
           f"systemctl status: {line.group(0)}; journal: {running}")
    figure(f"WatchdogSec shortened to {WATCHDOG_SEC}s by a drop-in for this test (shipped: 2min)")


# -- 3. reports -------------------------------------------------------------------------------

def test_reports_are_accepted(rig: Rig, figure: Figure) -> None:
    rig.ensure_running()
    start = time.monotonic()
    first = rig.wait_accepted(0)
    later = rig.wait_accepted(first["outcomes"]["accepted"] + 1)
    took = time.monotonic() - start
    assert later["outcomes"]["accepted"] >= 2
    assert later["outcomes"]["rejected"] == 0 and not later["last_rejections"], later["last_rejections"]
    figure(f"status --json: accepted {first['outcomes']['accepted']} -> {later['outcomes']['accepted']} "
           f"within {took:.1f} s, rejected {later['outcomes']['rejected']}, connection {later['connection']}")


# -- 4. reload --------------------------------------------------------------------------------

def test_reload_applies_a_new_interval_and_keeps_the_old_config_when_invalid(rig: Rig, figure: Figure) -> None:
    rig.ensure_running()
    pid = rig.main_pid()
    try:
        before = spacing(rig, rig.cursor())
        rig.write_config(interval="2s")
        cursor = rig.cursor()
        rig.reload()
        applied = rig.wait_journal(cursor, r"Reloaded configuration from (\S+) \(changed: ([^)]*)\)", 15)
        assert applied.group(1) == CONFIG and "report" in applied.group(2), applied.group(0)
        after = spacing(rig, rig.cursor())
        assert before < 1.6 and 1.7 < after < 2.8, (before, after)
        assert rig.main_pid() == pid, "reload restarted the agent"
        figure(f"interval 1s -> 2s by reload: report spacing {before:.2f} s -> {after:.2f} s; "
               f"journal: {applied.group(0)}")

        rig.write_config(rig.config_text(interval="2s").replace("interval: 2s", "interval: banana"))
        accepted = rig.status(config=False)["outcomes"]["accepted"]
        cursor = rig.cursor()
        rig.reload()
        refused = rig.wait_journal(cursor, r"Reload refused, keeping the running configuration: .*", 15)
        assert rig.active() and rig.main_pid() == pid
        kept = spacing(rig, rig.cursor(), reports=3)
        assert 1.7 < kept < 2.8, kept
        later = rig.wait_accepted(accepted + 1, config=False)
        assert later["outcomes"]["rejected"] == 0
        figure(f"invalid config on reload: {refused.group(0)!r}; still active, same MainPID {pid}, "
               f"spacing {kept:.2f} s (the old config), accepted {accepted} -> {later['outcomes']['accepted']}")
    finally:
        rig.restore()


def test_collectors_keep_delivering_after_a_reload_that_lengthens_the_interval(rig: Rig, figure: Figure) -> None:
    """The interval a reload applies is the one the collectors work to (network_stats bounds a delta by it)."""
    rig.ensure_running()
    try:
        spacing(rig, rig.cursor(), reports=3)
        before = rig.status()["collectors"]
        rig.write_config(interval="2s")
        cursor = rig.cursor()
        rig.reload()
        rig.wait_journal(cursor, r"Reloaded configuration from", 15)
        spacing(rig, cursor, reports=4)
        after = rig.status()["collectors"]
        lost = {name: c["no_data"] - before.get(name, {}).get("no_data", 0) for name, c in after.items()
                if c["no_data"] > before.get(name, {}).get("no_data", 0)}
        why = re.findall(r"Collector .* has no data: .*?;", rig.journal(cursor))
        figure(f"after a reload 1s -> 2s: rounds without data per collector {lost or 'none'}")
        assert not lost, f"collectors with no data in the rounds after the reload: {lost}: {why[:2]}"
    finally:
        rig.restore()


# -- 5. watchdog ------------------------------------------------------------------------------

def test_watchdog_kills_a_hung_agent_and_restarts_it(rig: Rig, figure: Figure) -> None:
    rig.ensure_running()
    before = rig.show("MainPID", "NRestarts", "WatchdogUSec", "RestartUSec")
    assert timespan(before["WatchdogUSec"]) == WATCHDOG_SEC, before
    pid, restarts = int(before["MainPID"]), int(before["NRestarts"])
    cursor = rig.cursor()
    start = time.monotonic()
    rig.sh(["sh", "-c", f"kill -STOP {pid}"])  # the shell's kill: minbase has no procps
    try:
        timeout = rig.wait_journal(cursor, r"Watchdog timeout \(limit [^)]*\)!", 3 * WATCHDOG_SEC + 5)
        found = time.monotonic() - start
        killed = rig.wait_journal(cursor, rf"Killing process {pid} \(.*\) with signal SIGABRT", 10)
        rig.wait_journal(cursor, r"Main process exited, code=(dumped|killed), status=6/ABRT", 20)
        rig.wait_journal(cursor, r"Failed with result 'watchdog'", 10)
        back_within = 3 * WATCHDOG_SEC + timespan(before["RestartUSec"]) + 60

        def restarted() -> bool:
            s = rig.show("MainPID", "NRestarts", "ActiveState", "SubState")
            return (s["ActiveState"], s["SubState"]) == ("active", "running") and int(s["NRestarts"]) > restarts \
                and int(s["MainPID"]) not in (0, pid)

        rig.wait_for(restarted, back_within, "restarted by systemd after the watchdog")
        back = time.monotonic() - start
        after = rig.show("MainPID", "NRestarts")
        figure(f"SIGSTOP of MainPID {pid}: '{timeout.group(0)}' after {found:.1f} s, '{killed.group(0)}', "
               f"active again after {back:.1f} s with MainPID {after['MainPID']}, NRestarts {restarts} -> "
               f"{after['NRestarts']}")
    finally:
        rig.sh(["sh", "-c", f"kill -CONT {pid}"], check=False)
        rig.ensure_running()


# -- 6. key readable on disk ------------------------------------------------------------------

def test_a_readable_key_on_disk_stops_the_unit_with_78_and_no_restart(rig: Rig, figure: Figure) -> None:
    rig.ensure_running()
    restart_sec = timespan(rig.show("RestartUSec")["RestartUSec"])
    try:
        rig.sh(["chmod", "0644", KEY])
        cursor = rig.cursor()
        assert rig.start("restart").returncode != 0, "restart reported success with a readable key"
        state = ended(rig)
        assert (state["Result"], state["ExecMainStatus"]) == ("exit-code", "78"), state
        holds(rig, restart_sec + HOLD_MARGIN, lambda: failed_for_good(rig),
              {k: state[k] for k in ("ActiveState", "NRestarts", "ExecMainPID")})
        text = rig.journal(cursor)
        assert "private key on disk" in text and f"chmod 600 {KEY}" in text, text
        assert "status=78/CONFIG" in text, text
        assert "Traceback" not in text
        figure(f"key 0644: Result={state['Result']}, ExecMainStatus={state['ExecMainStatus']}, NRestarts stayed "
               f"{state['NRestarts']} for {restart_sec + HOLD_MARGIN:.0f} s (RestartSec={restart_sec:.0f}s + "
               f"{HOLD_MARGIN:.0f} s)")
    finally:
        rig.sh(["chmod", "0600", KEY])
        rig.start()
        rig.ensure_running()


# -- 7. key missing ---------------------------------------------------------------------------

def test_a_missing_key_fails_with_243_credentials_and_no_restart(rig: Rig, figure: Figure) -> None:
    rig.ensure_running()
    restart_sec = timespan(rig.show("RestartUSec")["RestartUSec"])
    moved = KEY + ".moved-by-systemd-test"
    try:
        rig.sh(["mv", KEY, moved])
        cursor = rig.cursor()
        assert rig.start("restart").returncode != 0
        state = ended(rig)
        assert (state["Result"], state["ExecMainStatus"]) == ("exit-code", "243"), state
        holds(rig, restart_sec + HOLD_MARGIN, lambda: failed_for_good(rig),
              {k: state[k] for k in ("ActiveState", "NRestarts", "ExecMainPID")})
        text = rig.journal(cursor)
        line = re.search(r".*status=243/CREDENTIALS.*", text)
        assert line, text
        figure(f"key missing: Result={state['Result']}, ExecMainStatus={state['ExecMainStatus']} "
               f"('{line.group(0).strip()}'), NRestarts stayed {state['NRestarts']} for "
               f"{restart_sec + HOLD_MARGIN:.0f} s")
    finally:
        rig.sh(f"test -e {moved} && mv {moved} {KEY}", check=False)
        rig.start()
        rig.ensure_running()


# -- 8. stop ----------------------------------------------------------------------------------

def test_stop_is_clean_in_time_and_loses_no_report(rig: Rig, figure: Figure) -> None:
    rig.ensure_running()
    limit = timespan(rig.show("TimeoutStopUSec")["TimeoutStopUSec"])
    try:
        # Without a responder the newest report stays pending: the stop must keep it, the start end it.
        rig.stop_emulator()
        rig.wait_for(lambda: any(p["attempts"] >= 1 for p in rig.status()["pending"]), 30,
                     "a published report pending")
        # The next start: its first report comes up to a minute later, so the old one goes out first.
        rig.write_config(interval="60s", jitter="60s")
        cursor = rig.cursor()
        start = time.monotonic()
        result = rig.sh(["systemctl", "stop", UNIT], timeout=limit + 30, check=False)
        took = time.monotonic() - start
        assert result.returncode == 0, result.stderr
        assert took < limit, f"stop took {took:.1f} s, TimeoutStopSec={limit:.0f}s"
        after_stop = rig.show("ActiveState", "Result", "ExecMainCode", "ExecMainStatus")
        assert after_stop == {"ActiveState": "inactive", "Result": "success", "ExecMainCode": "1",
                              "ExecMainStatus": "0"}, after_stop
        text = rig.journal(cursor)
        for line in ("Received SIGTERM", "Stopping: disconnecting from", "Deactivated successfully"):
            assert line in text, text
        for bad in ("timed out", "SIGKILL", "Killing process", "Traceback"):
            assert bad not in text, text
        stopped = re.search(r"Stopped \((\d+) report\(s\) still pending in the outbox\)", text)
        assert stopped, text
        at_stop = rig.status()
        pending = [p["report_id"] for p in at_stop["pending"]]
        assert len(pending) == int(stopped.group(1)) >= 1, (stopped.group(0), at_stop["pending"])
        one_outcome_each(rig)

        rig.start_emulator()
        cursor = rig.cursor()
        assert rig.start().returncode == 0, rig.journal_tail()
        rig.wait_journal(cursor, rf"Outbox holds {len(pending)} pending report\(s\) from before", 20)

        def settled() -> Dict[int, str]:
            ledger = dict(rig.outbox()["ledger"])
            return {rid: ledger[rid] for rid in pending} if all(rid in ledger for rid in pending) else {}

        outcomes = rig.wait_for(settled, 60, f"an outcome for each of {pending}")
        text = rig.journal(cursor)
        for rid, outcome in outcomes.items():
            # Delivered, or (a newer report went out first) ended by design: never lost.
            assert outcome == "accepted" or f"Report {rid} unanswered" in text, (rid, outcome, text)
        box = one_outcome_each(rig)
        figure(f"systemctl stop took {took:.2f} s (TimeoutStopSec={limit:.0f}s), Result=success, exit 0; "
               f"'{stopped.group(0)}' {pending}; after the next start: {outcomes}")
        figure(f"outbox over the whole run: {box['built']} reports built, {len(box['ledger'])} with one outcome "
               f"each, {len(box['pending'])} pending, counters {box['counters']}")
    finally:
        rig.restore()


# -- 9. sandbox -------------------------------------------------------------------------------

def test_the_sandbox_holds_and_scores_at_most_2(rig: Rig, figure: Figure) -> None:
    rig.ensure_running()
    rig.wait_accepted(rig.status()["outcomes"]["accepted"])  # one more full round under the sandbox
    whole = rig.journal()
    killed = [line for line in whole.splitlines() if re.search(r"SIGSYS|Bad system call|status=31/SYS", line)]
    assert not killed, killed
    collectors = rig.status()["collectors"]
    failing = {name: c for name, c in collectors.items() if c.get("failed") or c.get("last_error")}
    assert collectors and not failing, failing
    scores = {}
    for unit in (UNIT, BOOTSTRAP_UNIT):
        out = rig.sh(["systemd-analyze", "security", "--no-pager", unit], check=False).stdout
        match = re.search(rf"Overall exposure level for {re.escape(unit)}: (\d+\.\d+)", out)
        assert match, out
        scores[unit] = float(match.group(1))
        gate = rig.sh(["systemd-analyze", "security", f"--threshold={int(MAX_EXPOSURE * 10)}", unit], check=False)
        assert gate.returncode == 0 and scores[unit] <= MAX_EXPOSURE, out
    lines = len(whole.splitlines())
    figure(f"no SIGSYS / 'Bad system call' in {lines} journal lines of the unit; collectors ok under the sandbox: "
           + ", ".join(f"{n} {c.get('ok', 0)}" for n, c in sorted(collectors.items())))
    figure("systemd-analyze security (live, in the container): "
           + ", ".join(f"{u} {s}" for u, s in scores.items()) + f" (limit {MAX_EXPOSURE})")


# -- 10. what this container cannot show ------------------------------------------------------

def test_memory_and_tasks_limits_are_enforced(rig: Rig, figure: Figure) -> None:
    rig.ensure_running()
    want = rig.show("MemoryMax", "TasksMax", "ControlGroup")
    fs = rig.sh(["stat", "-fc", "%T", "/sys/fs/cgroup"]).stdout.strip()
    group = want["ControlGroup"]
    if fs == "cgroup2fs":
        files = {"MemoryMax": f"/sys/fs/cgroup{group}/memory.max", "TasksMax": f"/sys/fs/cgroup{group}/pids.max"}
    else:
        files = {"MemoryMax": f"/sys/fs/cgroup/memory{group}/memory.limit_in_bytes",
                 "TasksMax": f"/sys/fs/cgroup/pids{group}/pids.max"}
    seen = {prop: rig.sh(["cat", path], check=False) for prop, path in files.items()}
    missing = [files[p] for p, r in seen.items() if r.returncode != 0]
    if missing:
        pytest.skip(f"not shown here: MemoryMax={want['MemoryMax']} and TasksMax={want['TasksMax']} are NOT "
                    f"enforced in this container: /sys/fs/cgroup is {fs} (cgroup v1/hybrid under systemd-nspawn, "
                    f"controllers read-only), and the unit's cgroup has no {', '.join(missing)}. "
                    "A cgroup v2 host shows them.")
    for prop, result in seen.items():
        assert result.stdout.strip() == want[prop], (prop, result.stdout, want[prop])
    figure(f"cgroup {fs}: " + ", ".join(f"{files[p]} = {r.stdout.strip()}" for p, r in seen.items()))


# -- 11. package life cycle (last: it removes the package) --------------------------------------

def test_reinstall_keeps_the_edited_config_remove_keeps_state_purge_removes_it(rig: Rig, figure: Figure) -> None:
    marker = "# edited by systemd-test"
    rig.write_config(rig.config_text() + marker + "\n")
    rig.ensure_running()
    pid = rig.main_pid()
    rig.sh(["apt-get", "install", "--reinstall", "-y", "-q", rig.deb_inside], timeout=300)
    assert marker in rig.sh(["cat", CONFIG]).stdout, "reinstall replaced the edited conffile"
    rig.wait_for(rig.active, 60, "active after reinstall")
    reinstalled = f"reinstall: the edit is kept; the enabled unit is active, MainPID {pid} -> {rig.main_pid()}"

    rig.sh(["apt-get", "remove", "-y", "-q", "defender-agent"], timeout=300)
    state = rig.sh(["systemctl", "is-active", UNIT], check=False).stdout.strip()
    assert state != "active", "remove left the agent running"
    kept = rig.sh(f"ls -d {CONFIG} {STATE} {STATE}/* 2>&1", check=False).stdout.split()
    assert CONFIG in kept and STATE in kept, kept
    assert marker in rig.sh(["cat", CONFIG]).stdout

    rig.sh(["apt-get", "purge", "-y", "-q", "defender-agent"], timeout=300)
    for path in (CONFIG, STATE):
        assert rig.sh(["test", "-e", path], check=False).returncode != 0, f"{path} is left after purge"
    left = rig.sh("find /etc/defender-agent /var/lib/defender-agent 2>/dev/null; "
                  "getent passwd defender-agent || echo 'no user defender-agent'", check=False).stdout.split("\n")
    figure(reinstalled)
    figure(f"remove: unit {state}; kept {' '.join(kept)}")
    figure(f"purge: {CONFIG} and {STATE} gone; what remains: {[x for x in left if x] or 'nothing'}")
