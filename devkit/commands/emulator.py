"""`python -m devkit emulator`: a local Device Defender and Device Shadow service (responder on a broker,
control-plane and data-plane APIs), loopback only."""

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
        "`bootstrap`/`values --endpoint-url`, returning the values of accepted reports; "
        "be the Device Shadow service on $aws/things/+/shadow/name/+/update|get|delete (and the classic shadow) "
        "and serve the iot-data shadow API (get/update/delete-thing-shadow, list-named-shadows-for-thing) on "
        "another loopback port for `aws iot-data --endpoint-url`; an update there reaches the device as "
        "/update/delta and /update/documents. Runs until SIGTERM/SIGINT."
    )
    parser.add_argument("--endpoint", default="127.0.0.1", help="broker host (default 127.0.0.1)")
    parser.add_argument("--port", type=int, required=True, help="broker TLS port")
    parser.add_argument("--cert", required=True, help="client certificate (PEM)")
    parser.add_argument("--key", required=True, help="client private key (PEM)")
    parser.add_argument("--ca", required=True, help="CA that signed the broker's certificate (PEM)")
    parser.add_argument("--client-id", default="defender-emulator", help="MQTT client id")
    parser.add_argument("--mode", choices=MODES, default="normal", help="reply behaviour (tests)")
    parser.add_argument(
        "--no-detect",
        action="store_true",
        help="be an account opened after AWS closed Device Defender Detect (2026-08-31): every Detect API "
        "answers 401 UnauthorizedException 'This feature is no longer available to new customers...' and "
        "reports get no reply (--mode silent); shadows work as usual",
    )
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to wait before each reply")
    parser.add_argument("--control-port", type=int, default=0,
                        help="loopback port of the control-plane API (default: a free one, printed)")
    parser.add_argument("--data-port", type=int, default=0,
                        help="loopback port of the shadow data-plane API (default: a free one, printed)")


def run(args: argparse.Namespace) -> int:
    require_boto3("emulator", "python -m devkit")  # the control plane validates requests against botocore's IoT model
    from devkit.emulator.controlplane import ControlPlaneServer
    from devkit.emulator.dataplane import DataPlaneServer
    from devkit.emulator.responder import Responder, ResponderOptions
    from devkit.emulator.shadow import ShadowStore
    from devkit.emulator.store import Store

    stop = threading.Event()
    log = logging.getLogger("devkit.emulator")
    store = Store()
    shadows = ShadowStore()
    control = ControlPlaneServer(store, port=args.control_port, detect_available=not args.no_detect)
    mode = "silent" if args.no_detect else args.mode  # what such an account's reserved topics do is not
    # documented; expect no reply (../shared/SPEC.md)
    options = ResponderOptions(args.endpoint, args.port, args.cert, args.key, args.ca, client_id=args.client_id,
                               mode=mode, delay=args.delay, on_accepted=store.record_report, shadows=shadows)
    responder = Responder(options, log)
    data = DataPlaneServer(shadows, publish=responder.publish_json, port=args.data_port)
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        control.start()
        responder.start()
        data.start()  # after the responder: its updates publish through it
        log.info("Responder running against %s:%d (mode %s%s)", args.endpoint, args.port, mode,
                 ", no Detect" if args.no_detect else "")
        print(f"Control plane: {control.url} (use --endpoint-url {control.url} with bootstrap and values)",
              flush=True)
        print(f"Data plane: {data.url} (use --endpoint-url {data.url} with aws iot-data)", flush=True)
        while not stop.wait(1.0):
            pass
    finally:
        responder.stop()
        data.stop()
        control.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0
