"""A small TCP proxy between the agent and the broker that tests and the fault campaign cut, stall and restore.

Modes: ``open`` forwards; ``cut`` drops every connection and refuses new ones; ``stall`` holds bytes
(nothing is read, so they wait in kernel buffers and flow again on ``restore``); ``blackhole`` is a
half-open connection: bytes are read and thrown away and no side sees a FIN or reset. ``restore()`` after
a blackhole resets the connections that lost bytes (as a peer that forgot them would) and opens again.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
from typing import List, Tuple


class Proxy:
    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.target = (host, target_port)
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, 0))
        self.listener.listen(16)
        self.port = int(self.listener.getsockname()[1])
        self.mode = "open"  # open | cut (refuse and drop) | stall (hold bytes) | blackhole (half-open)
        self._pairs: List[Tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.mode == "cut":
                client.close()
                continue
            if self.mode == "blackhole":  # accepted, then silence: a connect that never completes
                with self._lock:
                    self._pairs.append((client, client))
                threading.Thread(target=self._pump, args=(client, client), daemon=True).start()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=2)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        try:
            while not self._closed:
                if self.mode == "stall":
                    select.select([], [], [], 0.05)
                    continue
                if a.fileno() < 0 or b.fileno() < 0:
                    return
                readable, _, _ = select.select([a, b], [], [], 0.1)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if self.mode == "blackhole":
                        continue  # swallowed: the sender believes it went out
                    peers[sock].sendall(data)
        except OSError:
            return
        finally:
            a.close()
            b.close()

    def cut(self) -> None:
        """Drop every connection and refuse new ones."""
        self.mode = "cut"
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for a, b in pairs:
            for sock in (a, b):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def stall(self) -> None:
        self.mode = "stall"

    def blackhole(self) -> None:
        """Half-open: keep every connection up but deliver nothing in either direction."""
        self.mode = "blackhole"

    def restore(self) -> None:
        if self.mode == "blackhole":
            self._reset_all()
        self.mode = "open"

    def _reset_all(self) -> None:
        """Close every connection with a reset (SO_LINGER 0), as a peer that lost its state answers."""
        linger = struct.pack("ii", 1, 0)
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for a, b in pairs:
            for sock in {a, b}:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                sock.close()

    def close(self) -> None:
        self._closed = True
        self.cut()
        self.listener.close()
