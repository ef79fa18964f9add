"""The sd_notify client: addresses, the watchdog interval systemd grants, and sending without failing the loop."""

from __future__ import annotations

import logging
import os
import socket
import tempfile
from pathlib import Path

import pytest

from agent.notify import Notifier


def test_abstract_socket_names_and_disabled_notifier() -> None:
    assert Notifier({"NOTIFY_SOCKET": "@/org/freedesktop/systemd1/notify"}).address == \
        "\0/org/freedesktop/systemd1/notify"
    off = Notifier({})
    assert not off.enabled and not off.send("READY=1")


@pytest.mark.parametrize(("env", "interval"), [
    ({"WATCHDOG_USEC": "30000000"}, 15.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
    ({"WATCHDOG_USEC": "soon"}, None),
    ({"WATCHDOG_USEC": "0"}, None),
    ({}, None),
])
def test_watchdog_interval_is_half_of_what_systemd_grants(env: dict, interval: object) -> None:
    assert Notifier(env).watchdog_interval == interval


def test_messages_reach_the_socket_and_status_is_deduplicated() -> None:
    with tempfile.TemporaryDirectory() as folder:  # a short path: AF_UNIX names are limited to 108 bytes
        path = str(Path(folder) / "n.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.settimeout(2)
        notifier = Notifier({"NOTIFY_SOCKET": path})
        notifier.status("a\nb")
        notifier.status("a\nb")
        notifier.status("x" * 300)
        notifier.reloading()
        notifier.stopping()
        got = [sock.recv(1024) for _ in range(4)]
        notifier.close()
        sock.close()
    assert got == [b"STATUS=a b", b"STATUS=" + b"x" * 200, b"RELOADING=1", b"STOPPING=1"]


def test_a_missing_socket_is_logged_once_and_never_raises(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("agent.test.notify")
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")}, logger=log)
    assert not notifier.send("READY=1")
    notifier.watchdog()
    notifier.ready("x")
    lines = [r for r in caplog.records if r.name == "agent.test.notify"]
    assert len(lines) == 1 and lines[0].getMessage().startswith("Cannot notify systemd at ")


def test_ready_and_watchdog_reach_the_socket() -> None:
    with tempfile.TemporaryDirectory() as folder, socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(Path(folder) / "n.sock"))
        sock.settimeout(2)
        notifier = Notifier({"NOTIFY_SOCKET": str(Path(folder) / "n.sock")})
        notifier.ready("hello")  # READY=1 and the first STATUS= travel in one datagram
        notifier.watchdog()
        assert [sock.recv(1024), sock.recv(1024)] == [b"READY=1\nSTATUS=hello", b"WATCHDOG=1"]
        notifier.close()
