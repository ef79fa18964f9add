"""The exec collector with real programs: output parsing, safety checks, timeouts, caps, concurrency."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import pytest

from agent.catalog import MetricType
from agent.collectors.contract import BuildContext
from agent.collectors.exec import SPEC, ExecCollector
from agent.collectors.process import program_problem
from agent.config.load import parse_config
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
    prog = script(tmp_path, "slow", "sleep 0.5; echo 1\n")
    collector = ExecCollector(
        "e", argv=(prog,), metric="m", mtype=MetricType.NUMBER, fmt="auto", timeout=5, max_output=100
    )
    results = []
    first = threading.Thread(target=lambda: results.append(collector.collect()))
    first.start()
    time.sleep(0.15)
    with pytest.raises(CollectorError, match="still running"):
        collector.collect()
    first.join()
    assert results[0][0].value == 1


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
