"""The MQTT link: an awscrt client (MQTT5, or 3.1.1) whose callbacks only put events on a queue.

Nothing here decides anything: the scheduler loop reads the events, keeps the
state, and calls ``publish``/``subscribe``. awscrt reconnects on its own (MQTT5,
and 3.1.1 after a first success); a 3.1.1 first connect that fails is reported
with ``retry_by_caller`` and the loop calls ``start()`` again when it sees fit.

The TLS identity comes from files (``mqtt.cert``/``key``/``ca``); a PKCS#11 key
would be one more builder call (``mtls_with_pkcs11``) next to ``mtls_from_path``.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any, List, Protocol, Sequence

from agent.config.model import MqttConfig, MqttProtocol
from agent.delivery.events import (
    Connected,
    ConnectFailed,
    Disconnected,
    Message,
    PublishDone,
    Stopped,
    Subscribed,
)
from agent.errors import ConfigError
from agent.security import resolve_credential


class Link(Protocol):
    """What the scheduler needs from a connection; results come back as events."""

    def start(self) -> None: ...
    def subscribe(self, topics: Sequence[str]) -> None: ...
    def publish(self, topic: str, payload: bytes, report_id: int) -> None: ...
    def stop(self, timeout: float = 3.0) -> bool: ...


def tls_setup_error(mqtt: MqttConfig, source: str, exc: Exception) -> ConfigError:
    """awscrt refused the certificate, key or CA while building the TLS context (before any connection).

    The message names the files and awscrt's error code, never their contents.
    """
    return ConfigError.single(
        source, "mqtt",
        f"cannot set up TLS from cert {mqtt.cert}, key {resolve_credential(mqtt.key)} and ca {mqtt.ca} "
        f"({_err(exc)}). Check that all three are PEM files, that the key is unencrypted and belongs to "
        f"the certificate: openssl x509 -noout -pubkey -in CERT; openssl pkey -pubout -in KEY (the two must match)",
    )


def check_tls_files(mqtt: MqttConfig, source: str) -> None:
    """Build (not connect) the mutual-TLS context as `run` will; raise ConfigError when awscrt refuses it."""
    from awscrt import io as crt_io

    try:
        options = crt_io.TlsContextOptions.create_client_with_mtls_from_path(mqtt.cert, resolve_credential(mqtt.key))
        options.override_default_trust_store_from_path(None, mqtt.ca)
        crt_io.ClientTlsContext(options)
    except Exception as exc:  # awscrt raises RuntimeError/AwsCrtError subclasses for unusable files
        raise tls_setup_error(mqtt, source, exc) from None


def _err(exc: Any) -> str:
    if exc is None:
        return "no error given"
    name = getattr(exc, "name", None)
    text = f"{name}: {exc}" if name and name not in str(exc) else str(exc)
    return text.rstrip(". ")  # awscrt's messages end with a period; ours go on after them


class Mqtt5Link:
    """An awscrt MQTT5 client. Construct, ``start()``, then publish after ``Connected``+``Subscribed``."""

    def __init__(
        self,
        mqtt: MqttConfig,
        client_id: str,
        events: queue.SimpleQueue[object],
        logger: logging.Logger,
        max_reconnect_delay: float = 60.0,
    ) -> None:
        from awscrt import mqtt5
        from awsiot import mqtt5_client_builder

        self._mqtt5 = mqtt5
        self.events = events
        self.log = logger
        self._stopped = threading.Event()
        self.client = mqtt5_client_builder.mtls_from_path(
            endpoint=mqtt.endpoint,
            port=mqtt.port,
            cert_filepath=mqtt.cert,
            pri_key_filepath=resolve_credential(mqtt.key),
            ca_filepath=mqtt.ca,
            client_id=client_id,
            keep_alive_interval_sec=int(mqtt.keep_alive),
            session_behavior=mqtt5.ClientSessionBehaviorType.CLEAN,
            min_reconnect_delay_ms=500,
            max_reconnect_delay_ms=int(max_reconnect_delay * 1000),
            min_connected_time_to_reset_reconnect_delay_ms=10_000,
            ack_timeout_sec=30,
            connack_timeout_ms=int(mqtt.connect_timeout * 1000),
            retry_jitter_mode=mqtt5.ExponentialBackoffJitterMode.FULL,
            on_publish_received=self._on_publish,
            on_lifecycle_connection_success=self._on_success,
            on_lifecycle_connection_failure=self._on_failure,
            on_lifecycle_disconnection=self._on_disconnect,
            on_lifecycle_stopped=self._on_stopped,
        )

    # -- callbacks (awscrt threads): enqueue only --------------------------------------

    def _on_publish(self, data: Any) -> None:
        packet = data.publish_packet
        self.events.put(Message(str(packet.topic), bytes(packet.payload or b"")))

    def _on_success(self, data: Any) -> None:
        self.events.put(Connected(bool(getattr(data.connack_packet, "session_present", False))))

    def _on_failure(self, data: Any) -> None:
        self.events.put(ConnectFailed(_err(data.exception)))

    def _on_disconnect(self, data: Any) -> None:
        self.events.put(Disconnected(_err(data.exception)))

    def _on_stopped(self, data: Any) -> None:
        self._stopped.set()
        self.events.put(Stopped())

    # -- calls from the loop ----------------------------------------------------------

    def start(self) -> None:
        self._stopped.clear()
        self.client.start()

    def subscribe(self, topics: Sequence[str]) -> None:
        mqtt5 = self._mqtt5
        packet = mqtt5.SubscribePacket(
            subscriptions=[mqtt5.Subscription(topic_filter=t, qos=mqtt5.QoS.AT_LEAST_ONCE) for t in topics]
        )
        future = self.client.subscribe(packet)

        def done(fut: Any) -> None:
            try:
                suback = fut.result(0)
                codes = [int(c) for c in (suback.reason_codes or [])]
                bad = [c for c in codes if c >= 0x80]
                self.events.put(Subscribed(not bad, f"reason codes {codes}"))
            except Exception as exc:
                self.events.put(Subscribed(False, _err(exc)))

        future.add_done_callback(done)

    def publish(self, topic: str, payload: bytes, report_id: int) -> None:
        mqtt5 = self._mqtt5
        future = self.client.publish(
            mqtt5.PublishPacket(topic=topic, payload=payload, qos=mqtt5.QoS.AT_LEAST_ONCE)
        )

        def done(fut: Any) -> None:
            try:
                result = fut.result(0)
                puback = getattr(result, "puback", None)
                code = int(getattr(puback, "reason_code", 0) or 0)
                self.events.put(PublishDone(report_id, code < 0x80, "" if code < 0x80 else f"PUBACK {code}"))
            except Exception as exc:
                self.events.put(PublishDone(report_id, False, _err(exc)))

        future.add_done_callback(done)

    def stop(self, timeout: float = 3.0) -> bool:
        """Disconnect and wait (bounded) for the client to report it stopped."""
        try:
            self.client.stop()
        except Exception as exc:  # stopping twice is harmless but raises in some versions
            self.log.debug("Stopping the MQTT client: %s", exc)
        return self._stopped.wait(timeout)


class Mqtt311Link:
    """The same surface over awscrt's MQTT 3.1.1 connection (``mqtt.protocol: mqtt311``)."""

    def __init__(
        self,
        config: MqttConfig,
        client_id: str,
        events: queue.SimpleQueue[object],
        logger: logging.Logger,
        max_reconnect_delay: float = 60.0,
    ) -> None:
        from awscrt import mqtt
        from awsiot import mqtt_connection_builder

        self._mqtt = mqtt
        self.events = events
        self.log = logger
        self._closed = threading.Event()
        self.conn = mqtt_connection_builder.mtls_from_path(
            endpoint=config.endpoint,
            port=config.port,
            cert_filepath=config.cert,
            pri_key_filepath=resolve_credential(config.key),
            ca_filepath=config.ca,
            client_id=client_id,
            clean_session=True,
            keep_alive_secs=int(config.keep_alive),
            reconnect_min_timeout_secs=1,
            reconnect_max_timeout_secs=max(1, int(max_reconnect_delay)),
            on_connection_interrupted=self._on_interrupted,
            on_connection_resumed=self._on_resumed,
            on_connection_closed=self._on_closed,
        )

    def _on_interrupted(self, connection: Any, error: Any, **kwargs: Any) -> None:
        self.events.put(Disconnected(_err(error)))

    def _on_resumed(self, connection: Any, return_code: Any, session_present: Any, **kwargs: Any) -> None:
        self.events.put(Connected(bool(session_present)))

    def _on_closed(self, connection: Any, callback_data: Any = None, **kwargs: Any) -> None:
        self._closed.set()
        self.events.put(Stopped())

    def _on_message(self, topic: str, payload: bytes, **kwargs: Any) -> None:
        self.events.put(Message(str(topic), bytes(payload)))

    def start(self) -> None:
        self._closed.clear()
        future = self.conn.connect()

        def done(fut: Any) -> None:
            try:
                result = fut.result(0)
                self.events.put(Connected(bool(result.get("session_present", False))))
            except Exception as exc:
                self.events.put(ConnectFailed(_err(exc), retry_by_caller=True))

        future.add_done_callback(done)

    def subscribe(self, topics: Sequence[str]) -> None:
        results: List[str] = []
        lock = threading.Lock()

        def done(fut: Any) -> None:
            try:
                granted = fut.result(0).get("qos")
                outcome = "ok" if granted is not None else "refused"
            except Exception as exc:
                outcome = _err(exc)
            with lock:
                results.append(outcome)
                if len(results) < len(topics):
                    return
            bad = [r for r in results if r != "ok"]
            self.events.put(Subscribed(not bad, "; ".join(bad) or f"{len(topics)} topic(s)"))

        for topic in topics:
            future, _ = self.conn.subscribe(topic, self._mqtt.QoS.AT_LEAST_ONCE, callback=self._on_message)
            future.add_done_callback(done)

    def publish(self, topic: str, payload: bytes, report_id: int) -> None:
        future, _ = self.conn.publish(topic, payload, self._mqtt.QoS.AT_LEAST_ONCE)

        def done(fut: Any) -> None:
            try:
                fut.result(0)
                self.events.put(PublishDone(report_id, True))
            except Exception as exc:
                self.events.put(PublishDone(report_id, False, _err(exc)))

        future.add_done_callback(done)

    def stop(self, timeout: float = 3.0) -> bool:
        try:
            self.conn.disconnect()
        except Exception as exc:
            self.log.debug("Disconnecting the MQTT 3.1.1 connection: %s", exc)
            return False
        return self._closed.wait(timeout)


def make_link(
    mqtt: MqttConfig,
    client_id: str,
    events: queue.SimpleQueue[object],
    logger: logging.Logger,
    max_reconnect_delay: float = 60.0,
    source: str = "config",
) -> Link:
    """The link for ``mqtt.protocol``. Raises :class:`ConfigError` when awscrt refuses the TLS files."""
    kind = Mqtt311Link if mqtt.protocol == MqttProtocol.MQTT311 else Mqtt5Link
    try:
        return kind(mqtt, client_id, events, logger, max_reconnect_delay)
    except ImportError:
        raise
    except Exception as exc:  # awscrt raises RuntimeError/AwsCrtError subclasses for unusable files
        raise tls_setup_error(mqtt, source, exc) from None
