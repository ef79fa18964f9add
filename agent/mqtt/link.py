"""The MQTT link: an awscrt client (MQTT5, or 3.1.1) whose callbacks only put events on a queue.

Nothing here decides anything: the scheduler loop reads the events, keeps the
state, and calls ``publish``/``subscribe``. awscrt reconnects on its own (MQTT5,
and 3.1.1 after a first success); a 3.1.1 first connect that fails is reported
with ``retry_by_caller`` and the loop calls ``start()`` again when it sees fit.

The clients are built from ``awscrt`` alone (no awsiotsdk, which Debian does not
ship and which pins one exact awscrt), with one code path for every awscrt from
Debian bookworm's 0.16.8 to the newest: only parameters both have are used.
:func:`tls_context` is the one place the mutual-TLS context is made (``check``,
both links and the emulator's responder use it); :func:`mqtt5_client` builds the
MQTT5 client for the MQTT5 link and the responder. What awsiotsdk's
``mtls_from_path`` builders did and we now do here: the constants below; why: docs/INSTALL.md,
"Why it works this way".

The TLS identity comes from files (``mqtt.cert``/``key``/``ca``), or, when ``mqtt.key`` is a
``pkcs11:`` URI, from a token through :class:`agent.mqtt.pkcs11.Tokens` (the process's one
``Pkcs11Lib``, which :class:`Links`, the run's link factory, keeps across reconnects and reloads).
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any, Callable, List, Optional, Protocol, Sequence

from agent.config.model import LINK_ACK_TIMEOUT, Config, MqttConfig, MqttProtocol
from agent.config.source import located_problems
from agent.errors import ConfigError
from agent.events import (
    Connected,
    ConnectFailed,
    Disconnected,
    Message,
    PublishDone,
    Stopped,
    Subscribed,
    Tag,
)
from agent.mqtt.pkcs11 import TokenError, Tokens, handshake_hint
from agent.security import resolve_credential

# What awsiotsdk's builders set, kept here (see docs/INSTALL.md, "Why it works this way").
ALPN_PORT = 443
ALPN_MQTT = "x-amzn-mqtt-ca"  # AWS IoT's ALPN name for MQTT over mutual TLS on port 443
TCP_CONNECT_TIMEOUT_MS = 5_000
MQTT5_PING_TIMEOUT_MS = 30_000  # awscrt's default; must stay below the keep-alive (awscrt 0.16.8 refuses it)
MQTT311_PING_TIMEOUT_MS = 3_000  # awsiotsdk's mqtt_connection_builder default
MQTT311_OPERATION_TIMEOUT_MS = LINK_ACK_TIMEOUT * 1000  # as MQTT5's ack timeout (awsiotsdk's default, 0, waits for ever)

Callback = Callable[[Any], None]


class Link(Protocol):
    """What the scheduler needs from a connection; results come back as events."""

    def start(self) -> None: ...
    def subscribe(self, topics: Sequence[str]) -> None: ...
    def publish(self, topic: str, payload: bytes, tag: Tag) -> None: ...
    def stop(self, timeout: float = 3.0) -> bool: ...


def tls_setup_error(mqtt: MqttConfig, source: str, exc: Exception) -> ConfigError:
    """awscrt refused the certificate, key or CA while building the TLS context (before any connection).

    The message names the files and awscrt's error code, never their contents (nor a token's PIN).
    """
    if isinstance(exc, TokenError):
        return ConfigError(located_problems(source, [(exc.field, str(exc))]))
    return ConfigError.single(
        source, "mqtt",
        f"cannot set up TLS from cert {mqtt.cert}, key {resolve_credential(mqtt.key)} and ca {mqtt.ca} "
        f"({_err(exc)}). Check that all three are PEM files, that the key is unencrypted and belongs to "
        f"the certificate: openssl x509 -noout -pubkey -in CERT; openssl pkey -pubout -in KEY (the two must match)",
    )


def tls_context(cert: str, key: str, ca: str, port: int) -> Any:
    """The mutual-TLS ``awscrt.io.ClientTlsContext`` every client here uses (awsiotsdk's ``mtls_from_path``).

    ``cert``/``key`` are PEM file paths (``key`` already resolved), ``ca`` the one CA file that
    replaces the system trust store. On port 443 the ALPN name ``x-amzn-mqtt-ca`` tells AWS IoT
    that MQTT follows, as the SDK did. Raises awscrt's RuntimeError for unusable files.
    """
    from awscrt import io as crt_io

    options = crt_io.TlsContextOptions.create_client_with_mtls_from_path(cert, key)
    options.override_default_trust_store_from_path(None, ca)
    if port == ALPN_PORT and crt_io.is_alpn_available():
        options.alpn_list = [ALPN_MQTT]
    return crt_io.ClientTlsContext(options)


def config_tls_context(mqtt: MqttConfig, tokens: Optional[Tokens] = None) -> Any:
    """:func:`tls_context` for the agent's ``mqtt`` section; with a ``pkcs11:`` key, the token's context
    (``tokens`` holds the module: pass the run's, so that one ``Pkcs11Lib`` serves every link)."""
    if mqtt.on_token:
        from awscrt import io as crt_io

        alpn = [ALPN_MQTT] if mqtt.port == ALPN_PORT and crt_io.is_alpn_available() else None
        return (tokens or Tokens()).context(mqtt, alpn)
    return tls_context(mqtt.cert, resolve_credential(mqtt.key), mqtt.ca, mqtt.port)


def check_tls_files(mqtt: MqttConfig, source: str, tokens: Optional[Tokens] = None) -> None:
    """Build (not connect) the mutual-TLS context as `run` will; raise ConfigError when awscrt refuses it.
    With a token this logs in and finds the key (once: a wrong PIN is never tried twice)."""
    try:
        config_tls_context(mqtt, tokens)
    except Exception as exc:  # awscrt raises RuntimeError/AwsCrtError subclasses for unusable files
        raise tls_setup_error(mqtt, source, exc) from None


def socket_options() -> Any:
    """TCP options for both clients: awscrt's defaults with the SDK's 5 s connect timeout spelt out."""
    from awscrt import io as crt_io

    options = crt_io.SocketOptions()
    options.connect_timeout_ms = TCP_CONNECT_TIMEOUT_MS
    return options


def mqtt5_ping_timeout_ms(keep_alive_sec: int) -> int:
    """Below the keep-alive, always: awscrt 0.16.8's constructor raises ``RuntimeError: 0 (AWS_ERROR_SUCCESS)``
    when the ping timeout (default 30 s) is not shorter than ``keep_alive_interval_sec``."""
    return min(MQTT5_PING_TIMEOUT_MS, keep_alive_sec * 1000 // 2)


def mqtt5_client(
    *,
    endpoint: str,
    port: int,
    tls_ctx: Any,
    client_id: str,
    keep_alive_sec: int,
    min_reconnect_delay_ms: int,
    max_reconnect_delay_ms: int,
    on_publish: Callback,
    on_success: Callback,
    on_failure: Optional[Callback] = None,
    on_disconnect: Optional[Callback] = None,
    on_stopped: Optional[Callback] = None,
    min_connected_time_to_reset_reconnect_delay_ms: Optional[int] = None,
    ack_timeout_sec: Optional[int] = None,
    connack_timeout_ms: Optional[int] = None,
    retry_jitter_mode: Any = None,
) -> Any:
    """An ``awscrt.mqtt5.Client`` with a clean session, not started; ``None`` leaves awscrt's default.

    Every ``ClientOptions``/``ConnectPacket`` field named here exists from awscrt 0.16.8 on (0.16.8
    accepts ``connack_timeout_ms`` but does not use it). No username is set.
    """
    from awscrt import io as crt_io
    from awscrt import mqtt5

    options = mqtt5.ClientOptions(
        host_name=endpoint,
        port=port,
        bootstrap=crt_io.ClientBootstrap.get_or_create_static_default(),
        socket_options=socket_options(),
        tls_ctx=tls_ctx,
        connect_options=mqtt5.ConnectPacket(client_id=client_id, keep_alive_interval_sec=keep_alive_sec),
        session_behavior=mqtt5.ClientSessionBehaviorType.CLEAN,
        extended_validation_and_flow_control_options=(
            mqtt5.ExtendedValidationAndFlowControlOptions.AWS_IOT_CORE_DEFAULTS),
        retry_jitter_mode=retry_jitter_mode,
        min_reconnect_delay_ms=min_reconnect_delay_ms,
        max_reconnect_delay_ms=max_reconnect_delay_ms,
        min_connected_time_to_reset_reconnect_delay_ms=min_connected_time_to_reset_reconnect_delay_ms,
        ping_timeout_ms=mqtt5_ping_timeout_ms(keep_alive_sec),
        connack_timeout_ms=connack_timeout_ms,
        ack_timeout_sec=ack_timeout_sec,
        on_publish_callback_fn=on_publish,
        on_lifecycle_event_stopped_fn=on_stopped,
        on_lifecycle_event_connection_success_fn=on_success,
        on_lifecycle_event_connection_failure_fn=on_failure,
        on_lifecycle_event_disconnection_fn=on_disconnect,
    )
    return mqtt5.Client(options)


def _err(exc: Any) -> str:
    if exc is None:
        return "no error given"
    name = getattr(exc, "name", None)
    text = f"{name}: {exc}" if name and name not in str(exc) else str(exc)
    return text.rstrip(". ")  # awscrt's messages end with a period; ours go on after them


def _reason(puback: Any) -> str:
    """A PUBACK's reason as awscrt names it (``NOT_AUTHORIZED``), with the broker's reason string when sent."""
    code = getattr(puback, "reason_code", None)
    name = getattr(code, "name", None) or str(code)
    text = getattr(puback, "reason_string", None)
    return f"{name}: {text}" if text else name


class Mqtt5Link:
    """An awscrt MQTT5 client. Construct, ``start()``, then publish after ``Connected``+``Subscribed``."""

    def __init__(
        self,
        mqtt: MqttConfig,
        client_id: str,
        events: queue.SimpleQueue[object],
        logger: logging.Logger,
        max_reconnect_delay: float = 60.0,
        tokens: Optional[Tokens] = None,
    ) -> None:
        from awscrt import mqtt5

        self._mqtt5 = mqtt5
        self._config = mqtt
        self.events = events
        self.log = logger
        self._stopped = threading.Event()
        self.client = mqtt5_client(
            endpoint=mqtt.endpoint,
            port=mqtt.port,
            tls_ctx=config_tls_context(mqtt, tokens),
            client_id=client_id,
            keep_alive_sec=int(mqtt.keep_alive),
            min_reconnect_delay_ms=500,
            max_reconnect_delay_ms=int(max_reconnect_delay * 1000),
            min_connected_time_to_reset_reconnect_delay_ms=10_000,
            ack_timeout_sec=LINK_ACK_TIMEOUT,
            connack_timeout_ms=int(mqtt.connect_timeout * 1000),
            retry_jitter_mode=mqtt5.ExponentialBackoffJitterMode.FULL,
            on_publish=self._on_publish,
            on_success=self._on_success,
            on_failure=self._on_failure,
            on_disconnect=self._on_disconnect,
            on_stopped=self._on_stopped,
        )

    # -- callbacks (awscrt threads): enqueue only --------------------------------------

    def _on_publish(self, data: Any) -> None:
        packet = data.publish_packet
        self.events.put(Message(str(packet.topic), bytes(packet.payload or b"")))

    def _on_success(self, data: Any) -> None:
        self.events.put(Connected(bool(getattr(data.connack_packet, "session_present", False))))

    def _on_failure(self, data: Any) -> None:
        error = _err(data.exception)
        self.events.put(ConnectFailed(error + handshake_hint(self._config, error)))

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

    def publish(self, topic: str, payload: bytes, tag: Tag) -> None:
        mqtt5 = self._mqtt5
        future = self.client.publish(
            mqtt5.PublishPacket(topic=topic, payload=payload, qos=mqtt5.QoS.AT_LEAST_ONCE)
        )

        def done(fut: Any) -> None:
            try:
                result = fut.result(0)
                puback = getattr(result, "puback", None)
                code = int(getattr(puback, "reason_code", 0) or 0)
                if code < 0x80:
                    self.events.put(PublishDone(tag, True))
                else:
                    self.events.put(PublishDone(tag, False, f"PUBACK reason code {code:#04x} ({_reason(puback)})",
                                                refused=True))
            except Exception as exc:
                self.events.put(PublishDone(tag, False, _err(exc)))

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
        tokens: Optional[Tokens] = None,
    ) -> None:
        from awscrt import io as crt_io
        from awscrt import mqtt

        self._mqtt = mqtt
        self._config = config
        self.events = events
        self.log = logger
        self._closed = threading.Event()
        keep_alive = int(config.keep_alive)
        client = mqtt.Client(crt_io.ClientBootstrap.get_or_create_static_default(), config_tls_context(config, tokens))
        # No on_connection_closed (awscrt 0.16.8 has none): stop() learns it from the disconnect future.
        self.conn = mqtt.Connection(
            client=client,
            host_name=config.endpoint,
            port=config.port,
            client_id=client_id,
            clean_session=True,
            on_connection_interrupted=self._on_interrupted,
            on_connection_resumed=self._on_resumed,
            reconnect_min_timeout_secs=1,
            reconnect_max_timeout_secs=max(1, int(max_reconnect_delay)),
            keep_alive_secs=keep_alive,
            ping_timeout_ms=min(MQTT311_PING_TIMEOUT_MS, keep_alive * 1000 // 2),
            protocol_operation_timeout_ms=MQTT311_OPERATION_TIMEOUT_MS,
            socket_options=socket_options(),
        )

    def _on_interrupted(self, connection: Any, error: Any, **kwargs: Any) -> None:
        self.events.put(Disconnected(_err(error)))

    def _on_resumed(self, connection: Any, return_code: Any, session_present: Any, **kwargs: Any) -> None:
        self.events.put(Connected(bool(session_present)))

    def _on_closed(self, future: Any) -> None:
        """The disconnect future completed: closed and shut down, as awscrt's later ``on_connection_closed``."""
        exc = future.exception()
        if exc is not None:
            self.log.debug("Disconnecting the MQTT 3.1.1 connection: %s", _err(exc))
            return
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
                error = _err(exc)
                self.events.put(ConnectFailed(error + handshake_hint(self._config, error), retry_by_caller=True))

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

    def publish(self, topic: str, payload: bytes, tag: Tag) -> None:
        future, _ = self.conn.publish(topic, payload, self._mqtt.QoS.AT_LEAST_ONCE)

        def done(fut: Any) -> None:  # MQTT 3.1.1 has no reason codes: a broker that refuses acks all the same
            try:
                fut.result(0)
                self.events.put(PublishDone(tag, True))
            except Exception as exc:
                self.events.put(PublishDone(tag, False, _err(exc)))

        future.add_done_callback(done)

    def stop(self, timeout: float = 3.0) -> bool:
        try:
            future = self.conn.disconnect()
        except Exception as exc:
            self.log.debug("Disconnecting the MQTT 3.1.1 connection: %s", exc)
            return False
        future.add_done_callback(self._on_closed)
        return self._closed.wait(timeout)


def make_link(
    mqtt: MqttConfig,
    client_id: str,
    events: queue.SimpleQueue[object],
    logger: logging.Logger,
    max_reconnect_delay: float = 60.0,
    source: str = "config",
    tokens: Optional[Tokens] = None,
) -> Link:
    """The link for ``mqtt.protocol``. Raises :class:`ConfigError` when awscrt refuses the TLS files or the token."""
    kind = Mqtt311Link if mqtt.protocol == MqttProtocol.MQTT311 else Mqtt5Link
    try:
        return kind(mqtt, client_id, events, logger, max_reconnect_delay, tokens)
    except ImportError:
        raise
    except Exception as exc:  # awscrt raises RuntimeError/AwsCrtError subclasses for unusable files
        raise tls_setup_error(mqtt, source, exc) from None


def config_link(config: Config, events: queue.SimpleQueue[object], logger: logging.Logger,
                tokens: Optional[Tokens] = None) -> Link:
    """The link of ``config``; only called when ``mqtt`` is set."""
    assert config.mqtt is not None, "no link without mqtt (the session makes none)"
    return make_link(config.mqtt, config.client_id, events, logger, min(60.0, config.delivery.retry_max_delay),
                     config.source, tokens)


class Links:
    """The scheduler's default link factory: :func:`config_link` with the run's one :class:`Tokens`, so that
    every link of a run (its start, each reload that reconnects) uses one ``Pkcs11Lib``; awscrt's own
    reconnects reuse the link's TLS context and never log in again."""

    def __init__(self, tokens: Optional[Tokens] = None) -> None:
        self.tokens = tokens or Tokens()

    def __call__(self, config: Config, events: queue.SimpleQueue[object], logger: logging.Logger) -> Link:
        return config_link(config, events, logger, self.tokens)
