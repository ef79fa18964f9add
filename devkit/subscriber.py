"""A plain MQTT5 subscriber over mutual TLS (awscrt): what a rule or a consumer of a topic sink would see.

For the demo and the tests: it subscribes to topic filters of its choice and keeps
every message it receives, so a test can wait for them; it knows nothing of the agent.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence

from agent.mqtt.link import mqtt5_client, tls_context

KEEP_ALIVE = 60


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    at: float  # time.time() on arrival


class Subscriber:
    def __init__(self, port: int, cert: str, key: str, ca: str, filters: Sequence[str],
                 client_id: str = "topic-subscriber", host: str = "127.0.0.1") -> None:
        self.port, self.host, self.filters, self.client_id = port, host, list(filters), client_id
        self.cert, self.key, self.ca = cert, key, ca
        self.messages: List[Received] = []
        self._lock = threading.Lock()
        self._up = threading.Event()
        self._stopped = threading.Event()
        self._client: Any = None

    def start(self, timeout: float = 15.0) -> None:
        from awscrt import mqtt5

        self._client = mqtt5_client(
            endpoint=self.host, port=self.port, tls_ctx=tls_context(self.cert, self.key, self.ca, self.port),
            client_id=self.client_id, keep_alive_sec=KEEP_ALIVE, min_reconnect_delay_ms=200,
            max_reconnect_delay_ms=2000, on_publish=self._on_publish,
            on_success=lambda data: self._up.set(), on_disconnect=lambda data: self._up.clear(),
            on_stopped=lambda data: self._stopped.set(),
        )
        self._client.start()
        if not self._up.wait(timeout):
            self.stop()
            raise RuntimeError(f"subscriber could not connect to {self.host}:{self.port} in {timeout} s")
        packet = mqtt5.SubscribePacket(subscriptions=[
            mqtt5.Subscription(topic_filter=f, qos=mqtt5.QoS.AT_LEAST_ONCE) for f in self.filters])
        self._client.subscribe(packet).result(timeout)

    def _on_publish(self, data: Any) -> None:
        packet = data.publish_packet
        with self._lock:
            self.messages.append(Received(str(packet.topic), bytes(packet.payload or b""), time.time()))

    def received(self, topic: Optional[str] = None) -> List[Received]:
        with self._lock:
            return [m for m in self.messages if topic in (None, m.topic)]

    def wait_for(self, count: int, timeout: float, topic: Optional[str] = None) -> List[Received]:
        """At least ``count`` messages (on ``topic`` when given), or what came within ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.received(topic)
            if len(got) >= count:
                return got
            time.sleep(0.05)
        return self.received(topic)

    def stop(self) -> None:
        if self._client is not None:
            self._client.stop()
            self._stopped.wait(3.0)
