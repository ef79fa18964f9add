"""Regression: a full state_dir (SQLite "database or disk is full", ENOSPC on the id file) must not kill
the service loop, and writing must resume on the next round once space returns.

Before the fix the first failed COMMIT escaped the loop (a traceback and exit 1), and a COMMIT that failed
left the SQLite transaction open, so every later BEGIN failed even after space came back.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Iterator, List

import pytest

from agent.delivery import events as ev
from agent.delivery.topics import parse_topic, reply_topic
from agent.devtools.certs import Pki
from agent.scheduler import Service
from tests.delivery.conftest import CountingSource, make_config, wait_until


class AcceptingLink:
    """A link without a network: connects at once and answers every publish with `accepted`."""

    def __init__(self, events: queue.SimpleQueue[object]) -> None:
        self.events = events
        self.published: List[int] = []

    def start(self) -> None:
        self.events.put(ev.Connected(False))

    def subscribe(self, topics: object) -> None:
        self.events.put(ev.Subscribed(True))

    def publish(self, topic: str, payload: bytes, report_id: int) -> None:
        self.published.append(report_id)
        parsed = parse_topic(topic)
        assert parsed is not None
        thing, _fmt, _ = parsed
        body = json.dumps({"thingName": thing, "reportId": report_id, "status": "ACCEPTED", "timestamp": 1})
        self.events.put(ev.Message(reply_topic(thing, "json", "accepted"), body.encode()))

    def stop(self, timeout: float = 3.0) -> bool:
        return True


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


def test_full_state_dir_is_survived_and_writing_resumes(pki: Pki, small_fs: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    config = make_config(pki, 1, small_fs, interval=1, reply_timeout=1, retry_max_delay=1)
    links: List[AcceptingLink] = []

    def link_factory(cfg: object, events: queue.SimpleQueue[object], log: logging.Logger) -> AcceptingLink:
        links.append(AcceptingLink(events))
        return links[-1]

    service = Service(config, lambda cfg: CountingSource(), logging.getLogger("agent.diskfull"),
                      link_factory=link_factory)  # type: ignore[arg-type]
    result: List[int] = []
    errors: List[BaseException] = []

    def target() -> None:
        try:
            result.append(service.run())
        except BaseException as exc:  # the bug: a storage error escaped the loop
            errors.append(exc)

    caplog.set_level(logging.INFO, logger="agent.diskfull")
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: len(links) == 1 and len(links[0].published) >= 2, 10)
        filler = _fill(small_fs)
        assert wait_until(lambda: "Cannot write to" in caplog.text, 10), caplog.text
        time.sleep(2.5)  # a few rounds against a full disk
        assert thread.is_alive() and not errors, errors
        sent_while_full = len(links[0].published)
        filler.unlink()
        freed = time.monotonic()
        assert wait_until(lambda: "works again" in caplog.text, 5), caplog.text
        assert time.monotonic() - freed <= 2.5, "writing must resume within about one interval"
        assert wait_until(lambda: len(links[0].published) > sent_while_full, 5)
    finally:
        service.events.put(ev.SignalEvent("TERM"))
        thread.join(10)
    assert not errors and result == [0]

