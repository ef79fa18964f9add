"""A device of the shadow tests: an mTLS MQTT5 client (as the gateway is) that subscribes to one named shadow's
response topics, one filter each as AWS advises, and publishes requests. Reusable by other tests.

The service publishes an update's answer, delta and documents in that order on one connection at QoS 1, and the
broker keeps that order to a subscriber: once ``/update/documents`` of an update has arrived, a delta of it would
have arrived before. That is how a test shows that a message was *not* sent, without waiting for a time."""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional

from devkit.certs import Pki
from devkit.emulator.shadow import topic_prefix
from devkit.subscriber import Subscriber

RESPONSES = ("update/accepted", "update/rejected", "update/delta", "update/documents", "get/accepted",
             "get/rejected", "delete/accepted", "delete/rejected")


class ShadowDevice(Subscriber):
    def __init__(self, pki: Pki, port: int, thing: str, shadow: Optional[str]) -> None:
        pair = pki.client(thing)
        self.prefix = topic_prefix(thing, shadow)
        super().__init__(port, str(pair.cert), str(pair.key), str(pki.ca),
                         [f"{self.prefix}/{r}" for r in RESPONSES], client_id=thing)

    def request(self, operation: str, document: Any = None, raw: Optional[bytes] = None) -> None:
        """Publish to ``PREFIX/operation`` (``update``, ``get``, ``delete``) and wait for the PUBACK."""
        from awscrt import mqtt5

        payload = raw if raw is not None else (json.dumps(document).encode() if document is not None else b"")
        self._client.publish(mqtt5.PublishPacket(topic=f"{self.prefix}/{operation}", payload=payload,
                                                 qos=mqtt5.QoS.AT_LEAST_ONCE)).result(10)

    def next(self, response: str, count: int = 1, timeout: float = 10.0) -> Dict[str, Any]:
        """The ``count``-th message on ``PREFIX/response`` (waiting up to ``timeout``), decoded."""
        got = self.wait_for(count, timeout, topic=f"{self.prefix}/{response}")
        assert len(got) >= count, f"no message #{count} on {self.prefix}/{response}; got {self.topics()}"
        document: Dict[str, Any] = json.loads(got[count - 1].payload)
        return document

    def count(self, response: str) -> int:
        return len(self.received(f"{self.prefix}/{response}"))

    def topics(self) -> List[str]:
        return [m.topic[len(self.prefix) + 1:] for m in self.received()]
