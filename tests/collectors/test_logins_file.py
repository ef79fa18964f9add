"""The logins collector on a real auth.log file: first start, restarts, rotation, truncation, bounds, state."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Mapping

import pytest

from agent.collectors.contract import BuildContext
from agent.collectors.security import logins
from agent.errors import CollectorError
from agent.schema import Checker, Section
from tests.procs import plain_env

FAIL = "Dec  5 23:17:33 gw sshd[900]: Failed password for root from {ip} port 50022 ssh2\n"
OK = "2026-12-05T23:17:33.5+01:00 gw sshd[901]: Accepted password for pi from 10.1.1.1 port 50023 ssh2\n"


def options(**given: Any) -> Dict[str, Any]:
    checker = Checker("<test>")
    out = Section(fields=dict(logins.SPEC.options)).check_fields(given, "", checker, extra_known=())
    assert not checker.problems, checker.problems
    return dict(out)


def build(state_dir: Path, persist: bool = True, **given: Any) -> Any:
    ctx = BuildContext(name="logins", state_dir=state_dir, timeout=10.0, report_interval=300.0,
                       max_list_items=100, logger=logging.getLogger("test.logins"), persist_state=persist)
    return logins.SPEC.build(ctx, options(**given))


def values(collector: Any) -> Mapping[str, Any]:
    return {s.name: s.value for s in collector.collect()}


def append(path: Path, text: str) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)


def test_first_start_counts_from_now_then_each_line_once(tmp_path):
    log = tmp_path / "auth.log"
    log.write_text(FAIL.format(ip="10.0.0.1") * 5)  # history
    c = build(tmp_path / "state", source="file", path=str(log))
    assert values(c) == {"auth_failures": 0, "auth_failure_sources": [], "logins": 0}
    append(log, FAIL.format(ip="10.0.0.2") + FAIL.format(ip="2001:db8::2") + OK)
    assert values(c) == {"auth_failures": 2, "auth_failure_sources": ["10.0.0.2", "2001:db8::2"], "logins": 1}
    assert values(c)["auth_failures"] == 0  # nothing new


def test_a_restart_between_two_attempts_counts_each_once(tmp_path):
    log = tmp_path / "auth.log"
    log.write_text("")
    state = tmp_path / "state"
    first = build(state, source="file", path=str(log))
    values(first)  # first start: the position is saved
    append(log, FAIL.format(ip="10.0.0.3"))
    assert values(first)["auth_failures"] == 1
    append(log, FAIL.format(ip="10.0.0.4"))  # written while the agent is down
    second = build(state, source="file", path=str(log))
    assert values(second) == {"auth_failures": 1, "auth_failure_sources": ["10.0.0.4"], "logins": 0}
    third = build(state, source="file", path=str(log))
    assert values(third)["auth_failures"] == 0


def test_rotation_between_rounds_reads_the_rest_of_the_old_file_first(tmp_path):
    log = tmp_path / "auth.log"
    log.write_text("")
    c = build(tmp_path / "state", source="file", path=str(log))
    values(c)
    append(log, FAIL.format(ip="10.0.0.5"))
    os.rename(log, tmp_path / "auth.log.1")  # logrotate (create): the old file moves, a new one starts
    (tmp_path / "auth.log.2.gz").write_bytes(b"\x1f\x8b")  # compressed ones are never read
    log.write_text(FAIL.format(ip="10.0.0.6"))
    assert values(c) == {"auth_failures": 2, "auth_failure_sources": ["10.0.0.5", "10.0.0.6"], "logins": 0}
    append(log, FAIL.format(ip="10.0.0.7"))
    assert values(c)["auth_failure_sources"] == ["10.0.0.7"]


def test_rotation_with_the_old_file_gone_reads_the_new_one_whole(tmp_path):
    log = tmp_path / "auth.log"
    log.write_text("")
    c = build(tmp_path / "state", source="file", path=str(log))
    values(c)
    log.unlink()
    assert values(c)["auth_failures"] == 0  # no file: nothing, no error
    assert values(c)["auth_failures"] == 0  # still none (no `create` in logrotate's config): still no error
    log.write_text(FAIL.format(ip="10.0.0.8"))
    assert values(c)["auth_failure_sources"] == ["10.0.0.8"]


def test_copytruncate_reads_from_the_start(tmp_path):
    log = tmp_path / "auth.log"
    log.write_text(FAIL.format(ip="10.0.0.1") * 3)
    c = build(tmp_path / "state", source="file", path=str(log))
    values(c)
    with open(log, "w", encoding="utf-8") as f:  # truncated in place, then one new line
        f.write(FAIL.format(ip="10.0.0.9"))
    assert values(c)["auth_failure_sources"] == ["10.0.0.9"]


def test_a_partial_line_waits_for_its_end(tmp_path):
    log = tmp_path / "auth.log"
    log.write_text("")
    c = build(tmp_path / "state", source="file", path=str(log))
    values(c)
    line = FAIL.format(ip="10.0.0.10")
    append(log, line[:30])
    assert values(c)["auth_failures"] == 0
    append(log, line[30:])
    assert values(c)["auth_failures"] == 1


def test_a_round_is_bounded_and_the_rest_comes_next(tmp_path):
    log = tmp_path / "auth.log"
    log.write_text("")
    c = build(tmp_path / "state", source="file", path=str(log), max_lines=4)
    values(c)
    append(log, "".join(FAIL.format(ip=f"10.0.1.{i}") for i in range(10)))
    assert [values(c)["auth_failures"] for _ in range(4)] == [4, 4, 2, 0]


def test_a_round_is_bounded_across_a_rotation(tmp_path):
    log = tmp_path / "auth.log"
    log.write_text("")
    c = build(tmp_path / "state", source="file", path=str(log), max_lines=3)
    values(c)
    append(log, FAIL.format(ip="10.0.2.1") * 5)
    os.rename(log, tmp_path / "auth.log.1")
    log.write_text(FAIL.format(ip="10.0.2.2") * 2)
    assert [values(c)["auth_failures"] for _ in range(4)] == [3, 3, 1, 0]


def test_persist_false_reads_the_state_but_never_writes_it(tmp_path):
    log = tmp_path / "auth.log"
    log.write_text("")
    state = tmp_path / "state"
    daemon = build(state, source="file", path=str(log))
    values(daemon)
    saved = (state / "logins.logins.json").read_bytes()
    append(log, FAIL.format(ip="10.0.3.1"))
    once = build(state, persist=False, source="file", path=str(log))
    assert values(once)["auth_failures"] == 1
    assert (state / "logins.logins.json").read_bytes() == saved
    assert values(daemon)["auth_failures"] == 1  # the daemon still counts it in its own report


def test_renamed_metrics(tmp_path):
    log = tmp_path / "auth.log"
    log.write_text("")
    c = build(tmp_path / "s", source="file", path=str(log), metrics={"auth_failures": "ssh_fail"})
    assert values(c) == {"ssh_fail": 0}


def test_reads_names_the_source(tmp_path):
    assert logins.SPEC.reads is not None
    assert logins.SPEC.reads(options(source="file", path="/var/log/auth.log")) == ("/var/log/auth.log",)
    assert logins.SPEC.reads(options(source="journal")) == ("journal",)


def test_a_file_that_never_existed_fails_the_round_until_it_appears(tmp_path):
    log = tmp_path / "auth.log"
    c = build(tmp_path / "state", source="file", path=str(log))
    with pytest.raises(CollectorError, match=r"auth\.log: no such file"):
        c.collect()
    log.write_text(FAIL.format(ip="10.0.4.1"))
    assert values(c)["auth_failures"] == 0  # its first round: counts from now
    append(log, FAIL.format(ip="10.0.4.2"))
    assert values(c)["auth_failure_sources"] == ["10.0.4.2"]


def test_once_counts_since_the_services_position_even_when_another_collector_takes_a_baseline(tmp_path):
    """`once` reads the service's saved position; network_stats makes it sample twice, and the logins counts of
    the first sample are kept (a second one would be empty). It writes no state."""
    log = tmp_path / "auth.log"
    log.write_text("")
    state = tmp_path / "state"
    values(build(state, source="file", path=str(log)))  # the service's first round
    saved = (state / "logins.logins.json").read_bytes()
    append(log, FAIL.format(ip="10.0.5.1") + FAIL.format(ip="10.0.5.2"))
    config = tmp_path / "agent.yaml"
    config.write_text(
        f"thing_name: gw-1\nstate_dir: {state}\nsinks: [{{type: textfile, path: {tmp_path / 'a.prom'}}}]\n"
        f"collectors:\n  - type: network_stats\n  - type: logins\n    source: file\n    path: {log}\n"
        "custom_metrics: {auth_failures: number, auth_failure_sources: ip-address-list, logins: number}\n")
    config.chmod(0o600)
    done = subprocess.run([sys.executable, "-m", "agent", "once", "--config", str(config), "--baseline", "0.1"],
                          check=False, capture_output=True, text=True, env=plain_env(), timeout=60)
    assert done.returncode == 0, done.stderr
    custom = json.loads(done.stdout)["custom_metrics"]
    assert custom["auth_failures"] == [{"number": 2}]
    assert custom["auth_failure_sources"] == [{"ip_list": ["10.0.5.1", "10.0.5.2"]}]
    assert (state / "logins.logins.json").read_bytes() == saved
