"""The systemd notify protocol (sd_notify) over the unix datagram socket in $NOTIFY_SOCKET. Stdlib only.

Does nothing when $NOTIFY_SOCKET is unset (not under systemd). The watchdog
interval is half of $WATCHDOG_USEC, and only when $WATCHDOG_PID is unset or
names this process.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Mapping, Optional


class Notifier:
    def __init__(self, env: Mapping[str, str] = os.environ, logger: Optional[logging.Logger] = None) -> None:
        self.log = logger or logging.getLogger("agent.notify")
        address = env.get("NOTIFY_SOCKET") or ""
        if address.startswith("@"):
            address = "\0" + address[1:]  # abstract namespace
        self.address = address or None
        self.watchdog_interval: Optional[float] = None
        usec = env.get("WATCHDOG_USEC")
        pid = env.get("WATCHDOG_PID")
        if usec and (not pid or pid == str(os.getpid())):
            try:
                value = int(usec)
            except ValueError:
                value = 0
            if value > 0:
                self.watchdog_interval = value / 2 / 1_000_000
        self._sock: Optional[socket.socket] = None
        self._failed = False
        self._last_status = ""

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, message: str) -> bool:
        if self.address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sock.setblocking(False)
            self._sock.sendto(message.encode("utf-8"), self.address)
        except OSError as exc:
            if not self._failed:
                self._failed = True
                self.log.warning("Cannot notify systemd at %r: %s (further failures not logged)", self.address, exc)
            return False
        return True

    def ready(self, status: str = "") -> None:
        self.send("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def status(self, text: str) -> None:
        text = text.replace("\n", " ")[:200]
        if text != self._last_status:
            self._last_status = text
            self.send(f"STATUS={text}")

    def reloading(self) -> None:
        self.send("RELOADING=1")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
