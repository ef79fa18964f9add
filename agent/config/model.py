"""The frozen, typed configuration the rest of the agent receives.

Field names here are the YAML keys; :mod:`agent.config.spec` pairs each with
its schema node (a mismatch fails at import).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

from agent.behaviors.model import Behavior
from agent.catalog import KeyNames, MetricType, PayloadFormat
from agent.schema import TextEnum


class MqttProtocol(TextEnum):
    MQTT5 = "mqtt5"
    MQTT311 = "mqtt311"


class BacklogMode(TextEnum):
    """After an outage: send only the newest pending report, with or without the older ones' network deltas."""

    NEWEST = "newest"  # older unsent reports end superseded; their deltas are left out (and logged)
    FOLD = "fold"  # as newest, but their network deltas are added to the newest report's


class LogLevel(TextEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True)
class MqttConfig:
    endpoint: str
    port: int
    client_id: Optional[str]
    protocol: MqttProtocol
    cert: str
    key: str
    ca: str
    connect_timeout: float
    keep_alive: float
    pkcs11_library: Optional[str] = None  # the PKCS#11 module when ``key`` is a pkcs11: URI
    pkcs11_pin_file: Optional[str] = None  # the token's user PIN, read at start (LoadCredential= under systemd)

    @property
    def on_token(self) -> bool:
        """The private key is held by a PKCS#11 token (``key`` is a ``pkcs11:`` URI)."""
        return isinstance(self.key, str) and self.key[:7].lower() == "pkcs11:"  # None: a required key left out


# awscrt's own wait for a PUBACK, as agent.mqtt.link sets it on both protocols: a message is published again
# only after the link has given up on it (delivery.message_ack_timeout must be longer).
LINK_ACK_TIMEOUT = 30


@dataclass(frozen=True)
class ReportConfig:
    format: PayloadFormat
    key_names: KeyNames
    interval: float  # seconds
    jitter: float  # seconds, random 0..jitter added to each interval
    max_list_items: int


@dataclass(frozen=True)
class DeliveryConfig:
    backlog: BacklogMode
    reply_timeout: float
    retry_max_delay: float
    max_attempts: int
    max_outbox_bytes: int
    min_free_disk: int
    message_ack_timeout: float = 60.0
    message_retry_max_delay: float = 300.0


@dataclass(frozen=True)
class CustomMetricConfig:
    type: MetricType
    display_name: Optional[str] = None
    unit: Optional[str] = None
    description: Optional[str] = None
    tags: Mapping[str, str] = field(default_factory=dict)
    allow_any_characters: bool = False
    name: str = ""  # filled from the mapping key


@dataclass(frozen=True)
class CollectorConfig:
    """One entry of ``collectors:``. ``options`` holds the type-specific keys, already checked."""

    type: str
    name: str
    interval: Optional[float]
    timeout: float
    options: Mapping[str, Any]
    path: str = ""  # YAML path, e.g. "collectors[2]", for messages


class SinkType(TextEnum):
    DEFENDER = "defender"  # the Device Defender report on $aws/things/THING/defender/metrics/json|cbor
    TOPIC = "topic"  # one QoS 1 message per round on a topic of the user's choice (or Basic Ingest)
    TEXTFILE = "textfile"  # Prometheus text format for node_exporter's textfile collector


class TopicDocument(TextEnum):
    FLAT = "flat"  # plain values under cloud metric names (agent.sinks.flat)
    REPORT = "report"  # the exact Device Defender report document
    PER_METRIC = "per-metric"  # one message per numeric metric per round, on a {metric} topic (agent.sinks.per_metric)


class HealthMetrics(TextEnum):
    """Whether the agent's own health goes out as custom metrics (to the defender and topic sinks)."""

    OFF = "off"
    CUSTOM_METRICS = "custom_metrics"


@dataclass(frozen=True)
class SinkConfig:
    """One entry of ``sinks:``; ``topic`` is the template (``{thing_name}`` not yet filled in)."""

    type: SinkType
    name: str
    topic: Optional[str] = None
    document: TopicDocument = TopicDocument.FLAT
    path: Optional[Path] = None
    max_pending: int = 1000
    yaml_path: str = field(default="", compare=False)  # e.g. "sinks[1]", for messages

    @property
    def needs_broker(self) -> bool:
        return self.type is not SinkType.TEXTFILE


DEFAULT_SINKS = (SinkConfig(SinkType.DEFENDER, "defender"),)
VIOLATIONS_QUEUE = "violations"  # the outbox queue of the violation events (agent.consumers.violations): no sink's name


@dataclass(frozen=True)
class ViolationsConfig:
    """Where the violation events of the on-device behaviors go (``topic`` a template, as a topic sink's)."""

    topic: Optional[str] = None
    exec: Tuple[str, ...] = ()  # argv; the event as JSON on stdin
    exec_timeout: float = 10.0
    security_profile_name: str = "local"
    max_pending: int = 1000


@dataclass(frozen=True)
class ShadowConfig:
    """The named shadow whose ``state.reported`` the agent keeps current (agent.consumers.shadow)."""

    name: str = "defender-agent"
    remote_config: bool = False  # True: the allowed keys of the shadow's desired state are applied (agent.remote)


@dataclass(frozen=True)
class Config:
    thing_name: str
    mqtt: Optional[MqttConfig]  # None only when no sink needs a broker (e.g. only a textfile)
    report: ReportConfig
    delivery: DeliveryConfig
    state_dir: Path
    log_level: LogLevel
    collectors: Tuple[CollectorConfig, ...]
    custom_metrics: Mapping[str, CustomMetricConfig]
    source: str = "<memory>"
    sinks: Tuple[SinkConfig, ...] = DEFAULT_SINKS
    health_metrics: HealthMetrics = HealthMetrics.OFF
    behaviors: Tuple[Behavior, ...] = ()
    violations: ViolationsConfig = ViolationsConfig()
    shadow: Optional[ShadowConfig] = None  # None: no shadow (no `shadow:` section)

    @property
    def defender(self) -> Optional[SinkConfig]:
        """The Device Defender sink, when configured (at most one)."""
        return next((s for s in self.sinks if s.type is SinkType.DEFENDER), None)

    @property
    def needs_broker(self) -> bool:
        return (any(s.needs_broker for s in self.sinks) or bool(self.behaviors and self.violations.topic)
                or self.shadow is not None)

    @property
    def client_id(self) -> str:
        return (self.mqtt.client_id if self.mqtt else None) or self.thing_name

    @property
    def custom_metric_types(self) -> Dict[str, MetricType]:
        """Declared custom metric name -> its type."""
        return {name: metric.type for name, metric in self.custom_metrics.items()}
