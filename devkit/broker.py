"""Start and stop a private mosquitto with mutual TLS on a free loopback port (tests, `make demo`).

The broker runs as the current user (``user`` set to our own name): started as
root, mosquitto would otherwise drop to the ``mosquitto`` user, which cannot read
keys inside a private temporary directory. ``restart()`` keeps the port, so
clients reconnect to the same address.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Optional

from devkit.certs import Pki

MOSQUITTO_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/bin/mosquitto", "/usr/local/sbin/mosquitto")


class BrokerError(RuntimeError):
    """mosquitto is missing or did not start; the message includes its log tail."""


def find_mosquitto() -> Optional[str]:
    found = shutil.which("mosquitto")
    if found:
        return found
    for candidate in MOSQUITTO_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class Broker:
    """One mosquitto process with a mutual-TLS listener on 127.0.0.1:port."""

    def __init__(self, directory: Path, pki: Pki, port: Optional[int] = None, acl: Optional[str] = None) -> None:
        """``acl``: the text of a mosquitto acl_file (``user CN`` / ``topic readwrite FILTER`` lines; the
        client certificate's CN is the user name); without it every client may use every topic."""
        self.acl = acl
        self.directory = directory
        self.pki = pki
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.config_path = directory / "mosquitto.conf"
        self.log_path = directory / "mosquitto.log"
        self._proc: Optional[subprocess.Popen[bytes]] = None
        self.binary = find_mosquitto()

    def write_config(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        user = pwd.getpwuid(os.getuid()).pw_name
        self.config_path.write_text(
            "\n".join(
                [
                    f"listener {self.port} 127.0.0.1",
                    f"cafile {self.pki.ca}",
                    f"certfile {self.pki.server.cert}",
                    f"keyfile {self.pki.server.key}",
                    "require_certificate true",
                    "use_identity_as_username true",
                    "tls_version tlsv1.2",
                    "persistence false",
                    f"user {user}",
                    f"log_dest file {self.log_path}",
                    "log_type error",
                    "log_type warning",
                    "log_type notice",
                    "log_type information",
                    "connection_messages true",
                    "max_packet_size 1048576",
                    *([f"acl_file {self.directory / 'acl'}"] if self.acl is not None else []),
                    "",
                ]
            )
        )
        if self.acl is not None:
            (self.directory / "acl").write_text(self.acl)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> Optional[int]:
        return self._proc.pid if self._proc else None

    def start(self, timeout: float = 10.0) -> None:
        if self.binary is None:
            raise BrokerError("mosquitto is not installed (apt-get install -y mosquitto)")
        if self.running:
            return
        self.write_config()
        self._proc = subprocess.Popen(
            [self.binary, "-c", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise BrokerError(f"mosquitto exited with status {self._proc.returncode}: {self.log_tail()}")
            if port_open(self.port):
                return
            time.sleep(0.02)
        self.stop()
        raise BrokerError(f"mosquitto did not listen on 127.0.0.1:{self.port} within {timeout:.0f} s: {self.log_tail()}")

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; waits until the port is free."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL: the broker vanishes mid-conversation."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(5)

    def restart(self, down_for: float = 0.0) -> None:
        self.kill()
        if down_for:
            time.sleep(down_for)
        self.start()

    def log_tail(self, lines: int = 10) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return " | ".join(text.strip().splitlines()[-lines:])
