"""Configuration: a schema (the single source), a loader that checks it, a frozen typed model."""

from agent.config.load import load_config, parse_config
from agent.config.model import (
    CollectorConfig,
    Config,
    CustomMetricConfig,
    DeliveryConfig,
    MqttConfig,
    ReportConfig,
)

__all__ = [
    "CollectorConfig",
    "Config",
    "CustomMetricConfig",
    "DeliveryConfig",
    "MqttConfig",
    "ReportConfig",
    "load_config",
    "parse_config",
]
