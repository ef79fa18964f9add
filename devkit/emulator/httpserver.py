"""The HTTP server both emulated APIs run on: loopback, a thread per connection, no traceback for a
client that went away.

``socketserver`` prints a traceback to stderr for any exception in a request's thread; a client that
closes a kept-alive connection (boto3 does, when it is done or the test ends) is not an error of the
emulator, so that is one debug line. Anything else is still logged with its traceback.
"""

from __future__ import annotations

import logging
import sys
from http.server import ThreadingHTTPServer
from typing import Any

log = logging.getLogger("devkit.emulator")


class LoopbackHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            log.debug("Client %s went away: %s", client_address, exc)
            return
        log.error("Request from %s failed", client_address, exc_info=True)
