"""Regression: a full state_dir (SQLite "database or disk is full", ENOSPC on a file) must not kill the
service loop, and writing must resume on the next round once space returns.

Before the fix the first failed COMMIT escaped the loop (a traceback and exit 1), and a COMMIT that failed
left the SQLite transaction open, so every later BEGIN failed even after space came back.

Both tests run the loop on the fake clock and the shipped fake link (no broker, no sleeps) over a real
state_dir: a 1 MiB tmpfs filled to the brim (needs root), and, anywhere, an outbox whose SQLite page
budget (``PRAGMA max_page_count``) runs out, which is the same SQLITE_FULL error a full disk gives.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Iterator, Sequence

import pytest

from agent.report.model import ListeningPort, ListeningPorts, Sample, SampleKind
from devkit.fake_link import AutoReply
from tests.delivery.conftest import CountingSource
from tests.loop import Loop, make_config

INTERVAL = 5.0


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    target = tmp_path / "state"
    target.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(target)], capture_output=True,
                          check=False, timeout=10)
    if done.returncode != 0:
        pytest.skip(f"mount -t tmpfs is not permitted here: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False, timeout=10)


def _fill(directory: Path) -> Path:
    filler = directory / "filler"
    with open(filler, "wb") as handle, contextlib.suppress(OSError):
        for _ in range(64):  # 64 x 64 KiB: more than the 1 MiB filesystem
            handle.write(b"\0" * 65536)
            handle.flush()
    return filler


def errors(caplog: pytest.LogCaptureFixture) -> list:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def survive_and_resume(loop: Loop, caplog: pytest.LogCaptureFixture, make_full: object, make_room: object) -> None:
    """Reports flow; the disk fills (one error, the loop goes on for rounds); space returns: writing resumes
    within one interval and reports flow again."""
    loop.until(lambda: len(loop.link.published) >= 2, turns=100)
    make_full()  # type: ignore[operator]
    loop.until(lambda: errors(caplog), turns=200)
    loop.run_for(4 * INTERVAL)  # rounds against a full disk: no traceback, one error line for the burst
    assert len(errors(caplog)) == 1 and "Cannot write to" in errors(caplog)[0]
    assert loop.service.guard.storage_failures >= 3
    sent_while_full = len(loop.link.published)
    make_room()  # type: ignore[operator]
    freed = loop.clock.now
    loop.until(lambda: "works again" in caplog.text, turns=100)
    assert loop.clock.now - freed <= INTERVAL, "writing resumes within about one interval"
    loop.until(lambda: len(loop.link.published) > sent_while_full, turns=100)
    rid = loop.link.published_ids[-1]
    loop.until(lambda: loop.outcome(rid) == "accepted", turns=20)


def test_full_tmpfs_state_dir_is_survived_and_writing_resumes(small_fs: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agent.test.loop")
    config = make_config(small_fs, interval=INTERVAL, reply_timeout=1, retry_max_delay=1)
    filler = small_fs / "filler"
    with Loop(config, auto_reply=AutoReply.ACCEPT) as loop:
        survive_and_resume(loop, caplog, lambda: _fill(small_fs), filler.unlink)


class PortsSource(CountingSource):
    """Reports of about 5 KiB (400 listening ports): each one needs pages of its own in the outbox."""

    def sample(self) -> Sequence[Sample]:
        ports = ListeningPorts(tuple(ListeningPort(1000 + n) for n in range(400)))
        return [*super().sample(), Sample("listening_tcp_ports", ports, SampleKind.STANDARD)]


def test_outbox_out_of_space_is_survived_and_writing_resumes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agent.test.loop")
    config = make_config(tmp_path / "state", interval=INTERVAL, reply_timeout=1, retry_max_delay=1)
    with Loop(config, source=PortsSource(), auto_reply=AutoReply.ACCEPT) as loop:
        outbox = loop.service.state.outbox

        def make_full() -> None:
            loop.link.auto_reply = AutoReply.NONE  # else each accepted report frees the pages the next one takes
            pages = outbox.conn.execute("PRAGMA page_count").fetchone()[0]
            outbox.conn.execute(f"PRAGMA max_page_count={pages}")
            with contextlib.suppress(sqlite3.OperationalError):  # and use up the free pages
                for n in range(10_000):
                    outbox.set_meta({f"filler-{n}": "x" * 1000})

        def make_room() -> None:
            outbox.conn.execute("PRAGMA max_page_count=1000000")
            loop.link.auto_reply = AutoReply.ACCEPT

        survive_and_resume(loop, caplog, make_full, make_room)
