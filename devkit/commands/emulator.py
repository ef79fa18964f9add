"""`defender-agent emulator`: a local Device Defender (responder on a broker + control-plane API), loopback only."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from agent.commands.extras import require_boto3
from devkit.emulator.responder import MODES


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Connect to an MQTT broker with a client certificate, subscribe to "
        "$aws/things/+/defender/metrics/+, validate each report like `validate` and publish the reply; "
        "serve the AWS IoT custom-metric and list_metric_values API on a loopback HTTP port for "
        "`bootstrap`/`values --endpoint-url`, returning the values of accepted reports. "
        "Runs until SIGTERM/SIGINT."
    )
    parser.add_argument("--endpoint", default="127.0.0.1", help="broker host (default 127.0.0.1)")
    parser.add_argument("--port", type=int, required=True, help="broker TLS port")
    parser.add_argument("--cert", required=True, help="client certificate (PEM)")
    parser.add_argument("--key", required=True, help="client private key (PEM)")
    parser.add_argument("--ca", required=True, help="CA that signed the broker's certificate (PEM)")
    parser.add_argument("--client-id", default="defender-emulator", help="MQTT client id")
    parser.add_argument("--mode", choices=MODES, default="normal", help="reply behaviour (tests)")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to wait before each reply")
    parser.add_argument("--control-port", type=int, default=0,
                        help="loopback port of the control-plane API (default: a free one, printed)")


def run(args: argparse.Namespace) -> int:
    require_boto3("emulator", "python -m devkit")  # the control plane validates requests against botocore's IoT model
    from devkit.emulator.controlplane import ControlPlaneServer
    from devkit.emulator.responder import Responder, ResponderOptions
    from devkit.emulator.store import Store

    stop = threading.Event()
    log = logging.getLogger("devkit.emulator")
    store = Store()
    control = ControlPlaneServer(store, port=args.control_port)
    options = ResponderOptions(args.endpoint, args.port, args.cert, args.key, args.ca, client_id=args.client_id,
                               mode=args.mode, delay=args.delay, on_accepted=store.record_report)
    responder = Responder(options, log)
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        control.start()
        responder.start()
        log.info("Responder running against %s:%d (mode %s)", args.endpoint, args.port, args.mode)
        print(f"Control plane: {control.url} (use --endpoint-url {control.url} with bootstrap and values)",
              flush=True)
        while not stop.wait(1.0):
            pass
    finally:
        responder.stop()
        control.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0
