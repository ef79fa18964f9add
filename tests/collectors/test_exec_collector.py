"""The exec collector with real programs: output parsing, safety checks, timeouts, caps, concurrency."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from agent.catalog import MetricType
from agent.collectors.contract import BuildContext
from agent.collectors.exec import SPEC, ExecCollector
from agent.collectors.process import Running, program_problem, run_bounded
from agent.collectors.sampler import CollectorJob, Sampler
from agent.config.load import parse_config
from agent.config.model import CustomMetricConfig
from agent.errors import CollectorError, ConfigError


def script(tmp_path: Path, name: str, body: str, mode: int = 0o755) -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(mode)
    return str(path)


def run(argv, mtype=MetricType.NUMBER, fmt="auto", *, timeout=5.0, max_output=65536, env=None):
    c = ExecCollector(
        "e",
        argv=tuple(argv),
        metric="m",
        mtype=mtype,
        fmt=fmt,
        timeout=timeout,
        max_output=max_output,
        env=env,
    )
    return c.collect()


def test_number_list_json_and_ips(tmp_path):
    assert run([script(tmp_path, "n", "echo 42\n")])[0].value == 42
    assert run([script(tmp_path, "l", "printf '1\\n2.5\\n'\n")], MetricType.NUMBER_LIST)[0].value == (1, 2.5)
    assert run([script(tmp_path, "j", 'echo \'["a","b"]\'\n')], MetricType.STRING_LIST)[0].value == ("a", "b")
    ips = script(tmp_path, "ip", "echo 10.0.0.1; echo fd00::1\n")
    assert run([ips], MetricType.IP_ADDRESS_LIST)[0].value == ("10.0.0.1", "fd00::1")


def test_argv_is_passed_without_a_shell(tmp_path):
    prog = script(tmp_path, "args", 'echo "$#"\n')
    assert run([prog, "a b", "$(touch /tmp/pwned)", ";"])[0].value == 3


def test_minimal_fixed_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SECRET_TOKEN", "x")
    prog = script(tmp_path, "env", "env | cut -d= -f1 | sort\n")
    names = run([prog], MetricType.STRING_LIST, env={"EXTRA": "1"})[0].value
    assert set(names) <= {"PATH", "LANG", "LC_ALL", "EXTRA", "PWD", "SHLVL", "_"}
    assert "EXTRA" in names and "SECRET_TOKEN" not in names


def test_nonzero_exit_names_first_stderr_line(tmp_path):
    prog = script(tmp_path, "fail", "echo '' >&2; echo 'sensor bus busy' >&2; echo second >&2; exit 3\n")
    with pytest.raises(CollectorError, match=r"exited with status 3: sensor bus busy$"):
        run([prog])


def test_killed_by_signal(tmp_path):
    prog = script(tmp_path, "sig", "kill -TERM $$\n")
    with pytest.raises(CollectorError, match="killed by signal SIGTERM"):
        run([prog])


def test_unparsable_output_is_an_error_with_stderr(tmp_path):
    prog = script(tmp_path, "bad", "echo hello; echo 'warming up' >&2\n")
    with pytest.raises(
        CollectorError, match=r"output is not a number: line 1: 'hello' is not a number: warming up"
    ):
        run([prog])


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie waiting for a reaper is dead


def test_timeout_kills_the_whole_process_group(tmp_path):
    pids = tmp_path / "pids"
    prog = script(
        tmp_path,
        "hang",
        f"sleep 300 & echo $! >> {pids}\nsh -c 'sleep 300' & echo $! >> {pids}\necho $$ >> {pids}\nwait\n",
    )
    start = time.monotonic()
    with pytest.raises(CollectorError, match=r"timed out after 0.5s; its process group was killed"):
        run([prog], timeout=0.5)
    assert time.monotonic() - start < 3
    recorded = [int(p) for p in pids.read_text().split()]
    assert len(recorded) == 3
    deadline = time.monotonic() + 2
    while any(_alive(p) for p in recorded) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [p for p in recorded if _alive(p)] == []  # no orphans


def test_background_child_left_behind_is_killed(tmp_path):
    pidfile = tmp_path / "bg"
    prog = script(tmp_path, "bg", f"sleep 300 >/dev/null 2>&1 & echo $! > {pidfile}\necho 1\n")
    assert run([prog])[0].value == 1
    pid = int(pidfile.read_text())
    deadline = time.monotonic() + 2
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(pid)


def test_huge_stdout_is_capped_and_the_run_killed(tmp_path):
    prog = script(tmp_path, "yes", "exec yes 1\n")
    start = time.monotonic()
    with pytest.raises(CollectorError, match="more than 1000 bytes to stdout"):
        run([prog], MetricType.NUMBER_LIST, max_output=1000)
    assert time.monotonic() - start < 3


def test_huge_stderr_is_truncated_not_fatal(tmp_path):
    prog = script(tmp_path, "noisy", "head -c 1000000 /dev/zero | tr '\\0' x >&2; echo 5\n")
    assert run([prog])[0].value == 5


def test_unsafe_programs_are_refused(tmp_path):
    writable = script(tmp_path, "gw", "echo 1\n", mode=0o775)
    assert "group- or world-writable" in (program_problem(writable) or "")
    with pytest.raises(CollectorError, match=r"refusing to run it: .* world-writable"):
        run([writable])
    assert "not an absolute path" in (program_problem("bin/true") or "")
    assert "no such file" in (program_problem(str(tmp_path / "nope")) or "")
    assert "not a regular file" in (program_problem(str(tmp_path)) or "")
    noexec = script(tmp_path, "nx", "echo 1\n", mode=0o644)
    assert program_problem(noexec, euid=os.geteuid()) is not None or os.geteuid() == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a file to another user")
def test_program_owned_by_another_user_is_refused(tmp_path):
    prog = script(tmp_path, "theirs", "echo 1\n")
    os.chown(prog, 65534, 65534)
    assert "owned by uid 65534" in (program_problem(prog) or "")
    assert program_problem(prog, euid=65534) is None  # the agent's own user may own it


def test_never_two_runs_at_once(tmp_path):
    started, release = tmp_path / "started", tmp_path / "release"
    # The first run says it started, then waits (within its timeout) until the test lets it finish.
    prog = script(tmp_path, "slow", f"touch {started}\nwhile [ ! -e {release} ]; do sleep 0.01; done\necho 1\n")
    collector = ExecCollector(
        "e", argv=(prog,), metric="m", mtype=MetricType.NUMBER, fmt="auto", timeout=5, max_output=100
    )
    results = []
    first = threading.Thread(target=lambda: results.append(collector.collect()))
    first.start()
    try:
        deadline = time.monotonic() + 5
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert started.exists(), "the first run did not start within 5 s"
        with pytest.raises(CollectorError, match="still running"):
            collector.collect()
    finally:
        release.touch()
        first.join(10)
    assert not first.is_alive() and results[0][0].value == 1


BASE = """
thing_name: gw
mqtt: {endpoint: 127.0.0.1, cert: /c, key: /k, ca: /a}
custom_metrics: {peers: ip-address-list}
"""


def test_config_checks_command_and_build_checks_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"collectors\[0\].command\[0\]: 'probe' must be an absolute path"):
        parse_config(
            BASE + "collectors: [{type: exec, command: [probe], metric: peers, metric_type: ip-address-list}]"
        )
    with pytest.raises(ConfigError, match=r"command: must name the program"):
        parse_config(
            BASE + "collectors: [{type: exec, command: [], metric: peers, metric_type: ip-address-list}]"
        )
    ctx = BuildContext("e", tmp_path, 10.0, 300.0, 500, logging.getLogger("t"))
    bad = script(tmp_path, "ww", "echo\n", mode=0o757)
    opts = {
        "command": (bad,),
        "metric": "peers",
        "metric_type": "ip-address-list",
        "format": "auto",
        "env": {},
        "max_output": 100,
    }
    with pytest.raises(CollectorError, match="world-writable"):
        SPEC.build(ctx, opts)
    good = script(tmp_path, "ok", "echo ::1\n")
    assert SPEC.build(ctx, {**opts, "command": (good,)}).collect()[0].value == ("::1",)


# -- close(): a hung program is killed at once, and neither the agent nor a thread waits for it ---------


def hanging(tmp_path: Path) -> tuple:
    """A program whose shell and ``sleep 200`` child write their pids to a file, then hang."""
    pids = tmp_path / "pids"
    prog = script(tmp_path, "hang", f"sleep 200 & echo $! >> {pids}\necho $$ >> {pids}\nwait\n")
    return prog, pids


def started(pids: Path) -> list:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        recorded = pids.read_text().split() if pids.exists() else []
        if len(recorded) == 2:
            return [int(p) for p in recorded]
        time.sleep(0.01)
    raise AssertionError("the program did not start within 10 s")


def gone(pids: list, timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.01)
    return not any(_alive(p) for p in pids)


def kill_left(pids: list) -> None:
    for pid in pids:
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)


def test_close_kills_the_running_process_group_at_once(tmp_path):
    prog, pidfile = hanging(tmp_path)
    collector = ExecCollector(
        "e", argv=(prog,), metric="m", mtype=MetricType.NUMBER, fmt="auto", timeout=200, max_output=100
    )
    errors = []

    def collect():
        try:
            collector.collect()
        except CollectorError as exc:
            errors.append(str(exc))

    thread = threading.Thread(target=collect)
    thread.start()
    pids = started(pidfile)
    try:
        start = time.monotonic()
        collector.close()
        thread.join(3)
        assert not thread.is_alive(), "collect() still waits for the killed program"
        assert time.monotonic() - start < 3
        assert errors == [f"{prog} was killed by signal SIGKILL"]
        assert gone(pids), "close() left the program or its child running"
        with pytest.raises(CollectorError, match="not started: the collector is closed"):
            collector.collect()
    finally:
        kill_left(pids)


def test_sampler_close_ends_a_hung_exec_run_and_its_worker_thread(tmp_path):
    prog, pidfile = hanging(tmp_path)
    collector = ExecCollector(
        "hung", argv=(prog,), metric="m", mtype=MetricType.NUMBER, fmt="auto", timeout=200, max_output=100
    )
    sampler = Sampler([CollectorJob("hung", "exec", collector, 200.0, emits={"m": MetricType.NUMBER})], 300.0,
                      {"m": CustomMetricConfig(type=MetricType.NUMBER, name="m")})
    start = time.monotonic()
    sampler.begin(lambda: None)
    assert time.monotonic() - start < 0.5
    pids = started(pidfile)
    try:
        [worker] = [t for t in threading.enumerate() if t.name == "collector-hung"]
        start = time.monotonic()
        sampler.close()
        assert time.monotonic() - start < 0.5, "close() waited for the hung run"
        worker.join(3)
        assert not worker.is_alive(), "the worker thread outlived its killed program"
        assert gone(pids)
    finally:
        kill_left(pids)


def test_a_run_registered_after_kill_all_is_killed_at_once(tmp_path):
    prog, _ = hanging(tmp_path)
    running = Running()
    running.kill_all()
    start = time.monotonic()
    result = run_bounded([prog], 5, 100, running=running)
    assert time.monotonic() - start < 3
    assert result.returncode == -signal.SIGKILL and not result.ok
    assert result.describe() == "was killed by signal SIGKILL"


def test_run_result_says_why_the_program_was_killed(tmp_path):
    flood = run_bounded([script(tmp_path, "yes", "exec yes 1\n")], 10, 65536)
    assert flood.overflow and flood.returncode is None and not flood.ok
    assert flood.describe() == "was killed: wrote more than 64KiB to stdout"
    assert run_bounded([script(tmp_path, "y", "exec yes 1\n")], 10, 1000).describe() == (
        "was killed: wrote more than 1000 bytes to stdout")
    slow = run_bounded([script(tmp_path, "slow", "sleep 10\n")], 0.2, 100)
    assert slow.timed_out and slow.describe() == "timed out after 0.2s; its process group was killed"
    failed = run_bounded([script(tmp_path, "three", "exit 3\n")], 10, 100)
    assert failed.describe() == "exited with status 3" and not failed.ok
    assert run_bounded([script(tmp_path, "fine", "echo 1\n")], 10, 100).ok


def test_a_timeout_not_under_the_report_interval_is_warned_about(caplog):
    def load(report: str, timeout: str) -> list:
        caplog.clear()
        text = (BASE.replace("{peers: ip-address-list}", "{peers: number}") + report +
                "collectors:\n  - type: exec\n    command: [/bin/true]\n    metric: peers\n"
                f"    metric_type: number\n{timeout}")
        with caplog.at_level(logging.WARNING, logger="agent.config"):
            parse_config(text, "agent.yaml")
        return [r.getMessage() for r in caplog.records]

    assert load("report: {interval: 5m}\n", "    timeout: 5m\n") == [
        "agent.yaml:11: collectors[0].timeout: 5m is not shorter than report.interval (5m): while collector "
        "'exec' hangs, each round waits up to 5m for it, and its report comes that much later; a timeout under "
        "the interval keeps the reports on time"]
    assert load("report: {interval: 5m}\n", "    timeout: 299s\n") == []
    assert load("report: {interval: 1s}\n", "") == []  # the default 10s was not chosen: no warning
