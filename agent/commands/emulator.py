"""`defender-agent emulator`: a local Device Defender responder against a broker (tests, demos)."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from typing import Any

from agent.emulator.responder import MODES, Responder, ResponderOptions


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "emulator",
        help="run a local Device Defender responder: validate reports on a broker and reply accepted/rejected",
        description="Connect to an MQTT broker with a client certificate, subscribe to "
        "$aws/things/+/defender/metrics/+, validate each report like `validate` and publish the reply. "
        "Runs until SIGTERM/SIGINT.",
    )
    parser.add_argument("--endpoint", default="127.0.0.1", help="broker host (default 127.0.0.1)")
    parser.add_argument("--port", type=int, required=True, help="broker TLS port")
    parser.add_argument("--cert", required=True, help="client certificate (PEM)")
    parser.add_argument("--key", required=True, help="client private key (PEM)")
    parser.add_argument("--ca", required=True, help="CA that signed the broker's certificate (PEM)")
    parser.add_argument("--client-id", default="defender-emulator", help="MQTT client id")
    parser.add_argument("--mode", choices=MODES, default="normal", help="reply behaviour (tests)")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to wait before each reply")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    stop = threading.Event()
    options = ResponderOptions(args.endpoint, args.port, args.cert, args.key, args.ca, client_id=args.client_id,
                               mode=args.mode, delay=args.delay)
    responder = Responder(options, logging.getLogger("agent.emulator"))
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        responder.start()
        logging.getLogger("agent.emulator").info("Responder running against %s:%d (mode %s)",
                                                  args.endpoint, args.port, args.mode)
        while not stop.wait(1.0):
            pass
    finally:
        responder.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0
