"""A local Device Defender responder: receives reports over MQTT, validates them, replies.

It subscribes to ``$aws/things/+/defender/metrics/+`` (an explicit filter: ``#``
does not match topics that begin with ``$``), checks each report with the same
rules as ``defender-agent validate``, and publishes an accepted reply, or a
rejected one with ErrorCode ``InvalidPayload`` / ErrorMessage ``Malformed metrics
report`` (the reply format: AWS IoT Device Defender, "Sending metrics from
devices"). Replies use the report's own encoding.

Knobs for tests: ``mode`` = ``normal`` | ``reject`` (reject everything) |
``guide`` (reject everything exactly as the troubleshooting guide's "Malformed metrics
report" example prints it: no ``reportId``) | ``silent`` (no reply) | ``garbage``
(undecodable reply); ``delay`` seconds before replying. The awscrt callback only enqueues; one worker thread does the rest.

With ``shadows`` (a :class:`~devkit.emulator.shadow.ShadowStore`) it is also the Device Shadow service: it
subscribes to ``$aws/things/+/shadow/name/+/update``, ``/get`` and ``/delete`` (and the classic shadow's
``$aws/things/+/shadow/update|get|delete``) and answers as device-shadow-mqtt says: ``/update/accepted``
or ``/update/rejected``, then ``/update/delta`` (when desired and reported differ) and ``/update/documents``;
``/get/accepted|rejected``; ``/delete/accepted|rejected``. The modes and the delay apply to reports only.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import cbor2

from agent.mqtt.link import mqtt5_client, tls_context
from agent.mqtt.topics import RESPONDER_FILTER, parse_topic
from agent.report.document import decode, to_long, validate_document
from devkit.emulator.shadow import (
    REQUEST_FILTERS,
    ShadowError,
    ShadowStore,
    notifications,
    parse_request_topic,
    topic_prefix,
)

OnAccepted = Callable[[str, Dict[str, Any], int], None]
MODES = ("normal", "reject", "guide", "silent", "garbage")
ERROR_CODE = "InvalidPayload"
ERROR_MESSAGE = "Malformed metrics report"
RESPONDER_KEEP_ALIVE = 1200  # seconds: what awsiotsdk's builder used when none was given


@dataclass(frozen=True)
class Received:
    thing: str
    report_id: Optional[int]
    format: str
    payload: bytes
    accepted: bool
    problems: Tuple[str, ...]
    received_at_ms: int
    replied: str  # accepted | rejected | none | garbage


@dataclass
class ResponderOptions:
    endpoint: str
    port: int
    cert: str
    key: str
    ca: str
    client_id: str = "defender-emulator"
    mode: str = "normal"
    delay: float = 0.0
    on_accepted: Optional[OnAccepted] = None
    shadows: Optional[ShadowStore] = None
    extra: Mapping[str, Any] = field(default_factory=dict)


class Responder:
    def __init__(self, options: ResponderOptions, logger: Optional[logging.Logger] = None) -> None:
        if options.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {options.mode!r}")
        self.options = options
        self.mode = options.mode
        self.delay = options.delay
        self.log = logger or logging.getLogger("devkit.emulator.responder")
        self.received: List[Received] = []
        self.conflicts: List[Tuple[str, int]] = []  # (thing, id) seen with two different payloads
        self._by_id: Dict[Tuple[str, int], bytes] = {}
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._stopped = threading.Event()
        self._worker: Optional[threading.Thread] = None
        self._client: Any = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, timeout: float = 15.0) -> None:
        from awscrt import mqtt5

        self._mqtt5 = mqtt5
        o = self.options
        self._client = mqtt5_client(
            endpoint=o.endpoint, port=o.port, tls_ctx=tls_context(o.cert, o.key, o.ca, o.port),
            client_id=o.client_id, keep_alive_sec=RESPONDER_KEEP_ALIVE,
            min_reconnect_delay_ms=200, max_reconnect_delay_ms=2000,
            on_publish=lambda data: self._queue.put(("msg", data.publish_packet)),
            on_success=lambda data: self._queue.put(("up", None)),
            on_disconnect=lambda data: self._connected.clear(),
            on_stopped=lambda data: self._stopped.set(),
        )
        self._worker = threading.Thread(target=self._work, name="responder", daemon=True)
        self._worker.start()
        self._client.start()
        if not self._subscribed.wait(timeout):
            self.stop()
            raise RuntimeError(f"responder could not connect and subscribe to {o.endpoint}:{o.port} in {timeout} s")

    def stop(self) -> None:
        if self._client is not None:
            self._client.stop()
            self._stopped.wait(3.0)
        self._queue.put(("quit", None))
        if self._worker is not None:
            self._worker.join(3.0)

    # -- worker ----------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            kind, item = self._queue.get()
            if kind == "quit":
                return
            try:
                if kind == "up":
                    self._on_up()
                else:
                    self._on_message(str(item.topic), bytes(item.payload or b""))
            except Exception:  # the responder must keep serving; log with the traceback
                self.log.exception("Responder failed to handle a message")

    def _on_up(self) -> None:
        self._connected.set()
        mqtt5 = self._mqtt5
        filters = [RESPONDER_FILTER, *(REQUEST_FILTERS if self.options.shadows is not None else ())]
        future = self._client.subscribe(mqtt5.SubscribePacket(
            subscriptions=[mqtt5.Subscription(topic_filter=f, qos=mqtt5.QoS.AT_LEAST_ONCE) for f in filters]))
        future.result(10.0)
        self._subscribed.set()
        self.log.info("Responder subscribed to %s", ", ".join(filters))

    def _on_message(self, topic: str, payload: bytes) -> None:
        request = parse_request_topic(topic) if self.options.shadows is not None else None
        if request is not None:
            self._on_shadow(*request, payload)
        else:
            self._on_report(topic, payload)

    def _on_shadow(self, thing: str, name: Optional[str], operation: str, payload: bytes) -> None:
        store = self.options.shadows
        assert store is not None
        prefix = f"{topic_prefix(thing, name)}/{operation}"
        try:
            if operation == "update":
                update = store.update(thing, name, payload)
                self.publish_json(f"{prefix}/accepted", update.accepted)
                for topic, document in notifications(thing, name, update):
                    self.publish_json(topic, document)
                self.log.info("Shadow %s updated to version %d", topic_prefix(thing, name), update.accepted["version"])
            elif operation == "get":
                self.publish_json(f"{prefix}/accepted", store.get(thing, name, payload))
            else:
                self.publish_json(f"{prefix}/accepted", store.delete(thing, name, payload))
        except ShadowError as exc:
            self.publish_json(f"{prefix}/rejected", exc.document(store.now()))
            self.log.info("Shadow %s %s rejected: %d %s", topic_prefix(thing, name), operation, exc.code, exc.message)

    def publish_json(self, topic: str, document: Dict[str, Any]) -> None:
        """Publish ``document`` as JSON at QoS 1 (the shadow answers; the data plane's notifications)."""
        mqtt5 = self._mqtt5
        self._client.publish(mqtt5.PublishPacket(topic=topic, payload=json.dumps(document).encode(),
                                                 qos=mqtt5.QoS.AT_LEAST_ONCE))

    def _on_report(self, topic: str, payload: bytes) -> None:
        parsed = parse_topic(topic)
        if parsed is None or parsed[2] is not None:
            return
        thing, fmt, _ = parsed
        now_ms = int(time.time() * 1000)
        report_id: Optional[int] = None
        problems: List[str] = []
        long_doc: Dict[str, Any] = {}
        try:
            document, _ = decode(payload)
            if fmt == "json" and payload.lstrip()[:1] != b"{":
                problems.append("payload on a /json topic is not JSON")
            problems.extend(str(v) for v in validate_document(document, payload_size=len(payload)))
            if isinstance(document, dict):
                long_doc = to_long(document)
                rid = (long_doc.get("header") or {}).get("report_id") if isinstance(long_doc.get("header"), dict) else None
                report_id = rid if isinstance(rid, int) and not isinstance(rid, bool) else None
        except Exception as exc:
            problems.append(f"cannot decode: {exc}")
        ok = not problems and self.mode not in ("reject", "guide")
        if report_id is not None:
            with self._lock:
                key = (thing, report_id)
                earlier = self._by_id.setdefault(key, payload)
                if earlier != payload:
                    self.conflicts.append(key)
                    self.log.error("Report id %d of %r arrived twice with different bytes", report_id, thing)
        if self.delay:
            time.sleep(self.delay)
        replied = self._reply(topic, fmt, thing, report_id, ok, now_ms)
        with self._lock:
            self.received.append(Received(thing, report_id, fmt, payload, ok, tuple(problems), now_ms, replied))
        self.log.info("Report %s from %r: %s%s", report_id, thing, "valid" if not problems else "invalid",
                      f" ({'; '.join(problems[:3])})" if problems else "")
        if ok and self.options.on_accepted is not None:
            self.options.on_accepted(thing, long_doc, now_ms)

    def _reply(self, topic: str, fmt: str, thing: str, report_id: Optional[int], ok: bool, now_ms: int) -> str:
        mode = self.mode
        if mode == "silent":
            return "none"
        outcome = "accepted" if ok else "rejected"
        if mode == "guide":  # the troubleshooting guide's example, key for key
            body: Dict[str, Any] = {"thingName": thing, "status": "REJECTED",
                                    "statusDetails": {"ErrorCode": ERROR_CODE, "ErrorMessage": ERROR_MESSAGE},
                                    "timestamp": now_ms}
        else:
            body = {"thingName": thing, "status": outcome.upper(), "timestamp": now_ms}
            if report_id is not None:
                body["reportId"] = report_id
            if not ok:
                body["statusDetails"] = {"ErrorCode": ERROR_CODE, "ErrorMessage": ERROR_MESSAGE}
        if mode == "garbage":
            payload = b"\xff\x00not a reply{"
            outcome_label = "garbage"
        else:
            payload = bytes(cbor2.dumps(body)) if fmt == "cbor" else json.dumps(body).encode()
            outcome_label = outcome
        mqtt5 = self._mqtt5
        self._client.publish(mqtt5.PublishPacket(topic=f"{topic}/{outcome}", payload=payload,
                                                 qos=mqtt5.QoS.AT_LEAST_ONCE))
        return outcome_label

    # -- for tests and the demo ---------------------------------------------------------------

    def snapshot(self) -> List[Received]:
        with self._lock:
            return list(self.received)

    def wait_for(self, count: int, timeout: float) -> List[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.snapshot()
            if len(got) >= count:
                return got
            time.sleep(0.05)
        return self.snapshot()
