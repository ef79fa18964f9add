"""Baseline for the backlog drain: a bare awscrt MQTT5 loop publishing the same payloads (QoS 1).

``python -m benchmarks.drain_baseline OUTBOX CERT KEY CA PORT THING`` publishes every pending
payload of a copy of the outbox, in id order, as fast as awscrt takes them, and waits until the
responder has answered each id on the accepted/rejected topics. Prints one JSON line:
{"seconds": ..., "replies": ..., "connect_seconds": ...}. No outbox writes, no fsyncs: the floor.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import threading
import time
from typing import Any, List, Set, Tuple


def main(argv: List[str]) -> int:
    from awscrt import mqtt5
    from awsiot import mqtt5_client_builder

    from agent.delivery.replies import Reply, parse_reply
    from agent.delivery.topics import reply_topic, report_topic

    outbox, cert, key, ca, port, thing = argv[:6]
    conn = sqlite3.connect(f"file:{outbox}?mode=ro", uri=True)
    rows: List[Tuple[int, str, bytes]] = [(int(r), str(f), bytes(p)) for r, f, p in conn.execute(
        "SELECT report_id, format, payload FROM pending ORDER BY report_id")]
    conn.close()
    want: Set[int] = {r for r, _, _ in rows}
    got: Set[int] = set()
    lock = threading.Lock()
    done = threading.Event()
    connected = threading.Event()

    def on_publish(data: Any) -> None:
        packet = data.publish_packet
        reply = parse_reply(str(packet.topic), bytes(packet.payload or b""), thing)
        if isinstance(reply, Reply):
            with lock:
                got.add(reply.report_id)
                if want <= got:
                    done.set()

    client = mqtt5_client_builder.mtls_from_path(
        endpoint="127.0.0.1", port=int(port), cert_filepath=cert, pri_key_filepath=key, ca_filepath=ca,
        client_id="drain-baseline", on_publish_received=on_publish,
        on_lifecycle_connection_success=lambda data: connected.set(),
    )
    started = time.monotonic()
    client.start()
    if not connected.wait(30):
        print(json.dumps({"error": "did not connect in 30 s"}))
        return 1
    formats = sorted({f for _, f, _ in rows})
    subs = [mqtt5.Subscription(topic_filter=reply_topic(thing, f, o), qos=mqtt5.QoS.AT_LEAST_ONCE)
            for f in formats for o in ("accepted", "rejected")]
    client.subscribe(mqtt5.SubscribePacket(subscriptions=subs)).result(10)
    connect_seconds = time.monotonic() - started
    t0 = time.monotonic()
    futures = [client.publish(mqtt5.PublishPacket(topic=report_topic(thing, f), payload=p,
                                                  qos=mqtt5.QoS.AT_LEAST_ONCE)) for _, f, p in rows]
    ok = done.wait(600)
    seconds = time.monotonic() - t0
    for future in futures[-10:]:
        future.result(10)
    client.stop()
    print(json.dumps({"seconds": seconds, "replies": len(got), "complete": ok, "connect_seconds": connect_seconds}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
