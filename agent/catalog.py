"""The vocabulary of Device Defender reports, as data: every module that names a metric, a type or a key reads it here.

- :class:`MetricType`: the four custom metric types, spelled as the control plane spells them, and the key
  that wraps a value of each in a report (``number`` -> ``[{"number": 42}]``).
- :data:`STANDARD_METRICS`: the device-side standard metrics (long and short report key, kind, description).
- :data:`LONG_TO_SHORT`: every key of the report document in its long and short spelling.
- :data:`BUILTIN_METRICS`: the custom metrics the built-in ``system`` and ``disk`` collectors can emit, with
  their type, unit and description (shown in the docs and by ``bootstrap``, filled into a custom metric's
  ``unit``/``description`` when the config leaves them out).
- :data:`METRIC_NAME`: what a custom metric name may be (the config schema node and a plain predicate).

Sources: "AWS IoT Device Defender: Device-side metrics" and "Custom metrics" in the AWS IoT developer guide,
and the ``metricName`` shape of the ``iot`` API (botocore's service model); see docs/AWS-SETUP.md ("Why it works this way").
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Tuple

from agent.schema import Str, TextEnum


class MetricType(TextEnum):
    """A custom metric's declared type."""

    NUMBER = "number"
    NUMBER_LIST = "number-list"
    STRING_LIST = "string-list"
    IP_ADDRESS_LIST = "ip-address-list"

    @property
    def value_key(self) -> str:
        """The key that wraps a value of this type in a report (``number_list``, ...)."""
        return VALUE_KEYS[self]

    @classmethod
    def from_value_key(cls, key: str) -> Optional[MetricType]:
        return _TYPE_OF_VALUE_KEY.get(key)


VALUE_KEYS: Mapping[MetricType, str] = {
    MetricType.NUMBER: "number",
    MetricType.NUMBER_LIST: "number_list",
    MetricType.STRING_LIST: "string_list",
    MetricType.IP_ADDRESS_LIST: "ip_list",
}
_TYPE_OF_VALUE_KEY: Dict[str, MetricType] = {key: mtype for mtype, key in VALUE_KEYS.items()}


class PayloadFormat(TextEnum):
    """Report encoding; also the last level of the report topic."""

    JSON = "json"
    CBOR = "cbor"


class KeyNames(TextEnum):
    LONG = "long"
    SHORT = "short"


class StandardKind(enum.Enum):
    """The value shape of a standard metric."""

    PORTS = "ports"
    CONNECTIONS = "connections"
    NETWORK_STATS = "network_stats"


@dataclass(frozen=True)
class StandardMetric:
    name: str  # the long key under `metrics`
    short: str
    kind: StandardKind
    description: str


STANDARD_METRICS: Mapping[str, StandardMetric] = {
    m.name: m
    for m in (
        StandardMetric("listening_tcp_ports", "tp", StandardKind.PORTS, "TCP ports listening for connections"),
        StandardMetric("listening_udp_ports", "up", StandardKind.PORTS, "UDP ports bound to receive datagrams"),
        StandardMetric("tcp_connections", "tc", StandardKind.CONNECTIONS, "Established outbound and inbound TCP connections"),
        StandardMetric("network_stats", "ns", StandardKind.NETWORK_STATS, "Bytes and packets in and out since the previous report"),
    )
}

REPORT_VERSION = "1.0"
MAX_PAYLOAD_BYTES = 128 * 1024  # AWS IoT Core's MQTT message size limit

LONG_TO_SHORT: Mapping[str, str] = {
    "header": "hed",
    "report_id": "rid",
    "version": "v",
    "metrics": "met",
    "custom_metrics": "cmet",
    **{m.name: m.short for m in STANDARD_METRICS.values()},
    "ports": "pts",
    "port": "pt",
    "interface": "if",
    "total": "t",
    "established_connections": "ec",
    "connections": "cs",
    "remote_addr": "rad",
    "local_port": "lp",
    "local_interface": "li",
    "bytes_in": "bi",
    "bytes_out": "bo",
    "packets_in": "pi",
    "packets_out": "po",
}
SHORT_TO_LONG: Mapping[str, str] = {short: long for long, short in LONG_TO_SHORT.items()}
_LONG_KEYS: Mapping[str, str] = {key: key for key in LONG_TO_SHORT}


def key_map(key_names: str) -> Mapping[str, str]:
    """long name -> the name used in a document with ``key_names``."""
    return LONG_TO_SHORT if key_names == KeyNames.SHORT else _LONG_KEYS


# The service's metricName pattern (the iot API model) minus the reserved "aws:" prefix.
_METRIC_NAME_PATTERN = r"(?!aws:)[a-zA-Z0-9:_-]{1,128}"
_METRIC_NAME = re.compile(_METRIC_NAME_PATTERN)
METRIC_NAME = Str(
    pattern=_METRIC_NAME_PATTERN,
    pattern_hint="is not a valid custom metric name: 1 to 128 of a-z A-Z 0-9 : _ - and no 'aws:' prefix",
)


def is_metric_name(name: object) -> bool:
    return isinstance(name, str) and _METRIC_NAME.fullmatch(name) is not None


@dataclass(frozen=True)
class BuiltinMetric:
    """A metric a built-in collector computes: its type, unit and meaning."""

    type: MetricType
    unit: str
    description: str
    # string-list only: its strings often hold characters outside the service's set (Debian versions' + and ~),
    # so the example config declares it with `allow_any_characters: true`
    any_characters: bool = False


BUILTIN_METRICS: Mapping[str, Mapping[str, BuiltinMetric]] = {
    "system": {
        "cpu_usage": BuiltinMetric(MetricType.NUMBER, "percent", "CPU busy time since the previous sample, all cores"),
        "cpu_core_usage": BuiltinMetric(MetricType.NUMBER_LIST, "percent", "CPU busy time per core since the previous sample"),
        "load_average": BuiltinMetric(MetricType.NUMBER_LIST, "processes", "Load averages over 1, 5 and 15 minutes"),
        "memory_used_percent": BuiltinMetric(MetricType.NUMBER, "percent", "Memory in use (total - available) / total"),
        "memory_available_bytes": BuiltinMetric(MetricType.NUMBER, "bytes", "Memory available to new programs"),
        "swap_used_percent": BuiltinMetric(MetricType.NUMBER, "percent", "Swap in use; 0 without swap"),
        "swap_used_bytes": BuiltinMetric(MetricType.NUMBER, "bytes", "Swap in use"),
        "temperature": BuiltinMetric(MetricType.NUMBER, "celsius", "Highest reading of the selected sensors; left out when there is none"),
        "uptime_seconds": BuiltinMetric(MetricType.NUMBER, "seconds", "Time since boot"),
        "process_count": BuiltinMetric(MetricType.NUMBER, "processes", "Number of processes"),
        "logged_in_users": BuiltinMetric(MetricType.STRING_LIST, "names", "Distinct names of logged-in users (utmp)"),
        "agent_open_fds": BuiltinMetric(MetricType.NUMBER, "descriptors", "Open file descriptors of the agent itself"),
    },
    "disk": {
        "used_percent": BuiltinMetric(MetricType.NUMBER, "percent", "Disk space in use, as df shows it (root reserve excluded)"),
        "used_bytes": BuiltinMetric(MetricType.NUMBER, "bytes", "Disk space in use"),
        "free_bytes": BuiltinMetric(MetricType.NUMBER, "bytes", "Disk space free for unprivileged users"),
    },
    "logins": {
        "auth_failures": BuiltinMetric(MetricType.NUMBER, "attempts", "Failed login attempts (sshd, login, su, sudo) since the previous sample"),
        "auth_failure_sources": BuiltinMetric(MetricType.IP_ADDRESS_LIST, "addresses", "Remote addresses of the failed attempts counted in auth_failures, each once"),
        "logins": BuiltinMetric(MetricType.NUMBER, "logins", "Successful logins (sshd, login) since the previous sample"),
    },
    "file_integrity": {
        "files_changed": BuiltinMetric(MetricType.NUMBER, "files", "Watched files whose content, mode, owner or size changed, or that appeared or disappeared, since the previous sample"),
        "files_changed_paths": BuiltinMetric(MetricType.STRING_LIST, "paths", "The paths counted in files_changed"),
    },
    "packages": {
        "packages_installed": BuiltinMetric(MetricType.NUMBER, "packages", "Packages installed now, as dpkg records them"),
        "packages_changed": BuiltinMetric(MetricType.STRING_LIST, "packages", "Packages installed, upgraded or downgraded (name=version) or removed (-name=version) since the previous sample", any_characters=True),
    },
    "kernel_modules": {
        "kernel_modules": BuiltinMetric(MetricType.STRING_LIST, "modules", "Names of the kernel modules loaded now (/proc/modules)"),
    },
    "accounts": {
        "uid0_accounts": BuiltinMetric(MetricType.STRING_LIST, "names", "Accounts with user id 0 (/etc/passwd)"),
        "login_accounts": BuiltinMetric(MetricType.STRING_LIST, "names", "Accounts whose shell is a login shell (/etc/passwd, /etc/shells)"),
    },
}


class ValueKind(TextEnum):
    """The member of a ``MetricValue`` (ListMetricValues, ViolationEvent, a behavior's ``value``) a metric's
    value takes: ``{"count": 3}``, ``{"ports": [22]}``, ``{"cidrs": [...]}``, ``{"number": 1.5}``, ..."""

    COUNT = "count"
    CIDRS = "cidrs"
    PORTS = "ports"
    NUMBER = "number"
    NUMBERS = "numbers"
    STRINGS = "strings"


# A custom metric's type -> the MetricValue member its values are stored under ("Custom metrics").
CUSTOM_VALUE_KIND: Mapping[MetricType, ValueKind] = {
    MetricType.NUMBER: ValueKind.NUMBER,
    MetricType.NUMBER_LIST: ValueKind.NUMBERS,
    MetricType.STRING_LIST: ValueKind.STRINGS,
    MetricType.IP_ADDRESS_LIST: ValueKind.CIDRS,
}

NUMERIC_OPERATORS = ("less-than", "less-than-equals", "greater-than", "greater-than-equals")
TRAFFIC_DURATIONS = (300, 600, 900, 1800, 3600)  # seconds: the durationSeconds of the byte, packet and port-count metrics


@dataclass(frozen=True)
class DeviceMetric:
    """A device-side metric as Device Defender names it in the cloud ("Device-side metrics"): what
    ``values``, the flat document, the textfile and on-device behaviors call it."""

    name: str  # "aws:listening-tcp-ports"
    kind: ValueKind
    unit: str
    description: str
    operators: Tuple[str, ...]  # comparison operators a behavior may use on it
    durations: Tuple[int, ...] = ()  # allowed durationSeconds; empty: the metric takes none


DEVICE_METRICS: Mapping[str, DeviceMetric] = {
    m.name: m
    for m in (
        DeviceMetric("aws:all-bytes-in", ValueKind.COUNT, "bytes", "Bytes received in the last report period",
                     NUMERIC_OPERATORS, TRAFFIC_DURATIONS),
        DeviceMetric("aws:all-bytes-out", ValueKind.COUNT, "bytes", "Bytes sent in the last report period",
                     NUMERIC_OPERATORS, TRAFFIC_DURATIONS),
        DeviceMetric("aws:all-packets-in", ValueKind.COUNT, "packets", "Packets received in the last report period",
                     NUMERIC_OPERATORS, TRAFFIC_DURATIONS),
        DeviceMetric("aws:all-packets-out", ValueKind.COUNT, "packets", "Packets sent in the last report period",
                     NUMERIC_OPERATORS, TRAFFIC_DURATIONS),
        DeviceMetric("aws:destination-ip-addresses", ValueKind.CIDRS, "addresses",
                     "Remote addresses of established TCP connections", ("in-cidr-set", "not-in-cidr-set")),
        DeviceMetric("aws:listening-tcp-ports", ValueKind.PORTS, "ports", "TCP ports listening for connections",
                     ("in-port-set", "not-in-port-set")),
        DeviceMetric("aws:listening-udp-ports", ValueKind.PORTS, "ports", "UDP ports bound to receive datagrams",
                     ("in-port-set", "not-in-port-set")),
        DeviceMetric("aws:num-established-tcp-connections", ValueKind.COUNT, "connections",
                     "Established TCP connections", NUMERIC_OPERATORS),
        DeviceMetric("aws:num-listening-tcp-ports", ValueKind.COUNT, "ports", "Listening TCP ports",
                     NUMERIC_OPERATORS, TRAFFIC_DURATIONS),
        DeviceMetric("aws:num-listening-udp-ports", ValueKind.COUNT, "ports", "Listening UDP ports",
                     NUMERIC_OPERATORS, TRAFFIC_DURATIONS),
    )
}

# A standard metric of the report (its long key) -> the device-side metrics Device Defender derives from it.
STANDARD_CLOUD_NAMES: Mapping[str, Tuple[str, ...]] = {
    "listening_tcp_ports": ("aws:listening-tcp-ports", "aws:num-listening-tcp-ports"),
    "listening_udp_ports": ("aws:listening-udp-ports", "aws:num-listening-udp-ports"),
    "tcp_connections": ("aws:num-established-tcp-connections", "aws:destination-ip-addresses"),
    "network_stats": ("aws:all-bytes-in", "aws:all-bytes-out", "aws:all-packets-in", "aws:all-packets-out"),
}

# network_stats field -> its device-side metric ("Device-side metrics").
NETWORK_CLOUD_NAMES: Mapping[str, str] = {
    "bytes_in": "aws:all-bytes-in",
    "bytes_out": "aws:all-bytes-out",
    "packets_in": "aws:all-packets-in",
    "packets_out": "aws:all-packets-out",
}

# The agent's own health as custom metrics (`health_metrics: custom_metrics`); declared by the loader.
HEALTH_METRICS: Mapping[str, BuiltinMetric] = {
    "agent_collectors_failing": BuiltinMetric(MetricType.NUMBER, "collectors", "Collectors whose last run failed or timed out"),
    "agent_failing_collectors": BuiltinMetric(MetricType.STRING_LIST, "names", "Names of the collectors whose last run failed"),
    "agent_outbox_pending": BuiltinMetric(MetricType.NUMBER, "items", "Reports and messages waiting in the outbox"),
    "agent_seconds_since_accepted": BuiltinMetric(MetricType.NUMBER, "seconds", "Time since Device Defender last accepted a report; left out before the first"),
}
