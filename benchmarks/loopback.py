"""N established TCP connections on 127.0.0.1, held open by two helper processes.

One process listens and accepts, the other connects N times; each holds N
sockets, so the open-files limit is raised to the hard limit in each helper
(two processes keep each one under a hard limit of 20,000 at N = 10,000).
Every connection shows up twice in /proc/net/tcp (both ends ESTABLISHED),
exactly as two local programs talking to each other would. The helpers close
with a reset (SO_LINGER 0) so no TIME_WAIT entries linger into the next figure.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from typing import List, Optional

_HELPER = r"""
import resource, socket, struct, sys
role, count = sys.argv[1], int(sys.argv[2])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
want = count + 256
if want > soft:
    limit = want if hard == resource.RLIM_INFINITY else min(want, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
held = []
if role == "server":
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(4096)
    print(srv.getsockname()[1], flush=True)
    while len(held) < count:
        conn, _ = srv.accept()
        held.append(conn)
    print("accepted", len(held), flush=True)
else:
    port = int(sys.argv[3])
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port))
        held.append(s)
    print("connected", len(held), flush=True)
sys.stdin.read()  # hold until the parent closes our stdin
# Reset instead of a FIN handshake: no TIME_WAIT entries left behind to inflate later samples.
linger = struct.pack("ii", 1, 0)
for s in held:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
    s.close()
"""


class LoopbackConnections:
    """Context manager: ``with LoopbackConnections(1000): ...`` holds 1,000 established connections."""

    def __init__(self, count: int, timeout: float = 120.0) -> None:
        self.count = count
        self.timeout = timeout
        self.procs: List[subprocess.Popen[str]] = []
        self.setup_seconds: Optional[float] = None

    def _spawn(self, *args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-c", _HELPER, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.procs.append(proc)
        return proc

    def __enter__(self) -> LoopbackConnections:
        if self.count <= 0:
            return self
        start = time.monotonic()
        try:
            server = self._spawn("server", str(self.count))
            assert server.stdout is not None
            port = server.stdout.readline().strip()
            if not port.isdigit():
                raise RuntimeError("loopback server did not start")
            client = self._spawn("client", str(self.count), port)
            assert client.stdout is not None
            for proc in (client, server):
                assert proc.stdout is not None
                line = proc.stdout.readline().split()
                if len(line) != 2 or int(line[1]) != self.count:
                    raise RuntimeError(f"loopback helper reported {line!r}, wanted {self.count} connections")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        self.setup_seconds = time.monotonic() - start
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()
