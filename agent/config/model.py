"""The frozen, typed configuration the rest of the agent receives.

Field names here are the YAML keys; :mod:`agent.config.spec` pairs each with
its schema node (a mismatch fails at import).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

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


@dataclass(frozen=True)
class Config:
    thing_name: str
    mqtt: MqttConfig
    report: ReportConfig
    delivery: DeliveryConfig
    state_dir: Path
    log_level: LogLevel
    collectors: Tuple[CollectorConfig, ...]
    custom_metrics: Mapping[str, CustomMetricConfig]
    source: str = "<memory>"

    @property
    def client_id(self) -> str:
        return self.mqtt.client_id or self.thing_name

    @property
    def custom_metric_types(self) -> Dict[str, MetricType]:
        """Declared custom metric name -> its type."""
        return {name: metric.type for name, metric in self.custom_metrics.items()}
