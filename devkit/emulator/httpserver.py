"""The HTTP server both emulated APIs run on: loopback only, served from a thread, a thread per connection,
no traceback for a client that went away.

``socketserver`` prints a traceback to stderr for any exception in a request's thread; a client that
closes a kept-alive connection (boto3 does, when it is done or the test ends) is not an error of the
emulator, so that is one debug line. Anything else is still logged with its traceback.
"""

from __future__ import annotations

import logging
import sys
import threading
from http.server import ThreadingHTTPServer
from typing import Any, Optional, TypeVar

log = logging.getLogger("devkit.emulator")
_S = TypeVar("_S", bound="LoopbackServer")


class LoopbackHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            log.debug("Client %s went away: %s", client_address, exc)
            return
        log.error("Request from %s failed", client_address, exc_info=True)


class LoopbackServer:
    """An emulated API on a loopback port, served from a thread. ``port=0`` picks a free one (:attr:`url`).

    A subclass builds its request handler and calls :meth:`_serve` from its constructor."""

    label = "HTTP API"

    def _serve(self, handler: Any, host: str, port: int) -> None:
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError(f"the emulator binds loopback only, not {host!r}")
        self._httpd = LoopbackHTTPServer((host, port), handler)
        self._thread: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        text = host.decode() if isinstance(host, bytes) else str(host)
        shown = f"[{text}]" if ":" in text else text
        return f"http://{shown}:{port}"

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def start(self: _S) -> _S:
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name=self.label,
                                        daemon=True)
        self._thread.start()
        log.info("%s listening on %s", self.label, self.url)
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self: _S) -> _S:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
