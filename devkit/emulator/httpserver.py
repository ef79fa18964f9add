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
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, Optional, Tuple, TypeVar

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


Handle = Callable[[str, str, bytes], Tuple[int, Dict[str, str], bytes]]  # method, path, body -> status, headers, JSON


def _handler(handle: Handle) -> type:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are two writes: avoid the 40 ms delayed-ACK stall
        server_version = "defender-agent-emulator"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            status, headers, payload = handle(self.command, self.path, body)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s %s", self.address_string(), format % args)

    return Handler


class LoopbackServer:
    """An emulated API on a loopback port, served from a thread. ``port=0`` picks a free one (:attr:`url`).

    A subclass calls :meth:`_serve` from its constructor with what answers each request."""

    label = "HTTP API"

    def _serve(self, handle: Handle, host: str, port: int) -> None:
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError(f"the emulator binds loopback only, not {host!r}")
        self._httpd = LoopbackHTTPServer((host, port), _handler(handle))
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
