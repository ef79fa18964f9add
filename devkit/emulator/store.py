"""What the local emulator knows: custom metric definitions, security profiles and stored values.

Thread-safe (one lock); shared by the control-plane HTTP server and the MQTT
responder. :meth:`Store.record_report` keeps values the way the service does
("AWS IoT Device Defender: Custom metrics", and ListMetricValues in the API reference): a custom metric's value is stored only when the
metric is defined with the matching type and the value keeps the value rules;
everything else is dropped silently, as the real service drops it.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, FrozenSet, List, Mapping, Optional, Sequence, Set, Tuple

from agent.catalog import MetricType
from agent.report.cloud import custom_value, standard_values
from agent.report.document import key_style, to_long

log = logging.getLogger("devkit.emulator.store")

ACCOUNT = "123456789012"
METRIC_TYPES = tuple(t.value for t in MetricType)



class ApiError(Exception):
    """A modelled IoT error: ``code`` is the exception shape name, ``status`` its HTTP status."""

    def __init__(self, code: str, status: int, message: str, **extra: str) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.message = message
        self.extra = extra


def not_found(message: str) -> ApiError:
    return ApiError("ResourceNotFoundException", 404, message)


def invalid(message: str) -> ApiError:
    return ApiError("InvalidRequestException", 400, message)


@dataclass(frozen=True)
class MetricDefinition:
    name: str
    type: str
    display_name: Optional[str]
    tags: Tuple[Tuple[str, str], ...]
    token: str
    created: float
    modified: float

    @property
    def arn(self) -> str:
        return f"arn:aws:iot:local:{ACCOUNT}:custommetric/{self.name}"


@dataclass(frozen=True)
class Datum:
    timestamp_ms: int
    value: Mapping[str, Any]  # one MetricValue member: {"number": 1.0}, {"cidrs": [...]}, ...


@dataclass(frozen=True)
class SecurityProfile:
    """A security profile as CreateSecurityProfile gave it; ``behaviors`` are the JSON objects as sent.

    Alert targets, metrics to retain, tags and the metrics export config are not kept: the emulator
    raises no alarms, so DescribeSecurityProfile answers with empty ``alertTargets``.
    """

    name: str
    description: Optional[str]
    behaviors: Tuple[Mapping[str, Any], ...]
    version: int
    created: float
    modified: float

    @property
    def arn(self) -> str:
        return self.arn_of(self.name)

    @staticmethod
    def arn_of(name: str) -> str:
        return f"arn:aws:iot:local:{ACCOUNT}:securityprofile/{name}"

    @property
    def metrics(self) -> FrozenSet[str]:
        """The metrics its behaviors name (what ``list_security_profiles(metricName=)`` matches)."""
        return frozenset(b["metric"] for b in self.behaviors if isinstance(b.get("metric"), str))

    @property
    def dimensions(self) -> FrozenSet[str]:
        """The dimensions its behaviors name (what ``list_security_profiles(dimensionName=)`` matches)."""
        out = set()
        for behavior in self.behaviors:
            dimension = behavior.get("metricDimension")
            if isinstance(dimension, Mapping) and isinstance(dimension.get("dimensionName"), str):
                out.add(dimension["dimensionName"])
        return frozenset(out)


@dataclass
class _State:
    metrics: Dict[str, MetricDefinition] = field(default_factory=dict)
    profiles: Dict[str, SecurityProfile] = field(default_factory=dict)
    dimensions: Set[str] = field(default_factory=set)
    values: Dict[Tuple[str, str], List[Datum]] = field(default_factory=dict)
    dropped: int = 0


class Store:
    """In-memory state of one emulated account and region."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._lock = threading.Lock()
        self._state = _State()
        self._clock = clock

    # -- custom metric definitions -------------------------------------------------

    def create_metric(
        self,
        name: str,
        metric_type: str,
        display_name: Optional[str],
        tags: Sequence[Tuple[str, str]],
        token: str,
    ) -> MetricDefinition:
        """Create a definition. The same name with the same token returns the existing one (idempotent)."""
        if name.startswith("aws:"):
            raise invalid(f"Custom metric name {name} must not begin with the reserved prefix aws:")
        with self._lock:
            existing = self._state.metrics.get(name)
            if existing is not None:
                if existing.token == token:
                    return existing
                raise ApiError(
                    "ResourceAlreadyExistsException",
                    409,
                    f"Custom metric {name} already exists",
                    resourceId=name,
                    resourceArn=existing.arn,
                )
            now = self._clock()
            definition = MetricDefinition(name, metric_type, display_name, tuple(tags), token, now, now)
            self._state.metrics[name] = definition
            return definition

    def describe_metric(self, name: str) -> MetricDefinition:
        with self._lock:
            definition = self._state.metrics.get(name)
        if definition is None:
            raise not_found(f"Custom metric {name} does not exist")
        return definition

    def update_display_name(self, name: str, display_name: str) -> MetricDefinition:
        with self._lock:
            definition = self._state.metrics.get(name)
            if definition is None:
                raise not_found(f"Custom metric {name} does not exist")
            definition = replace(definition, display_name=display_name, modified=self._clock())
            self._state.metrics[name] = definition
            return definition

    def delete_metric(self, name: str) -> None:
        """Delete a definition and its values; refused while a security profile uses it. Missing: no-op."""
        with self._lock:
            users = sorted(p for p, profile in self._state.profiles.items() if name in profile.metrics)
            if users:
                raise invalid(
                    f"Custom metric {name} is used by security profile(s) {', '.join(users)}; "
                    "remove it from them first"
                )
            self._state.metrics.pop(name, None)
            for key in [k for k in self._state.values if k[1] == name]:
                del self._state.values[key]

    def metric_names(self) -> List[str]:
        with self._lock:
            return sorted(self._state.metrics)

    def metric_types(self) -> Dict[str, MetricType]:
        """Custom metric name -> its declared type, for checking behaviors that name custom metrics."""
        with self._lock:
            return {name: MetricType(d.type) for name, d in self._state.metrics.items()}

    # -- security profiles and dimensions ------------------------------------------------

    def create_security_profile(
        self, name: str, description: Optional[str], behaviors: Sequence[Mapping[str, Any]]
    ) -> SecurityProfile:
        """A new profile at version 1; ResourceAlreadyExistsException when the name is taken."""
        with self._lock:
            existing = self._state.profiles.get(name)
            if existing is not None:
                raise ApiError(
                    "ResourceAlreadyExistsException",
                    409,
                    f"Security profile {name} already exists",
                    resourceId=name,
                    resourceArn=existing.arn,
                )
            now = self._clock()
            profile = SecurityProfile(name, description, tuple(copy.deepcopy(list(behaviors))), 1, now, now)
            self._state.profiles[name] = profile
            return profile

    def describe_security_profile(self, name: str) -> SecurityProfile:
        with self._lock:
            profile = self._state.profiles.get(name)
        if profile is None:
            raise not_found(f"Security profile {name} does not exist")
        return profile

    def delete_security_profile(self, name: str, expected_version: Optional[int] = None) -> None:
        """Delete a profile; VersionConflictException when ``expected_version`` is not its version. Missing: no-op."""
        with self._lock:
            profile = self._state.profiles.get(name)
            if profile is None:
                return
            if expected_version is not None and expected_version != profile.version:
                raise ApiError(
                    "VersionConflictException",
                    409,
                    f"Security profile {name} is at version {profile.version}, not {expected_version}",
                )
            del self._state.profiles[name]

    def put_security_profile(self, name: str, metrics: Sequence[str]) -> None:
        """Test hook: a profile (created or replaced) with one bare behavior per metric, named after it."""
        behaviors = [{"name": metric, "metric": metric} for metric in metrics]
        with self._lock:
            self._state.profiles.pop(name, None)
        self.create_security_profile(name, None, behaviors)

    def security_profiles(self, metric: Optional[str] = None, dimension: Optional[str] = None) -> List[str]:
        """Profile names, sorted; only those whose behaviors use ``metric`` / ``dimension`` when given."""
        with self._lock:
            profiles = list(self._state.profiles.values())
        return sorted(
            p.name
            for p in profiles
            if (metric is None or metric in p.metrics) and (dimension is None or dimension in p.dimensions)
        )

    def add_dimension(self, name: str) -> None:
        with self._lock:
            self._state.dimensions.add(name)

    def has_dimension(self, name: str) -> bool:
        with self._lock:
            return name in self._state.dimensions

    # -- values ------------------------------------------------------------------------

    def record_value(self, thing: str, metric: str, timestamp_ms: int, value: Mapping[str, Any]) -> None:
        with self._lock:
            self._state.values.setdefault((thing, metric), []).append(Datum(timestamp_ms, dict(value)))

    def metric_values(self, thing: str, metric: str, start_ms: int, end_ms: int) -> List[Datum]:
        """Values with ``start_ms <= timestamp < end_ms``, oldest first."""
        with self._lock:
            data = list(self._state.values.get((thing, metric), ()))
        return sorted((d for d in data if start_ms <= d.timestamp_ms < end_ms), key=lambda d: d.timestamp_ms)

    @property
    def dropped(self) -> int:
        """Custom values dropped silently (undefined metric, other type, value outside the rules)."""
        with self._lock:
            return self._state.dropped

    def record_report(self, thing_name: str, document: Mapping[str, Any], received_at_ms: int) -> None:
        """Store what the service would store from one accepted report (long or short key names)."""
        doc: Mapping[str, Any] = to_long(document) if key_style(document) == "short" else document
        stored: List[Tuple[str, Dict[str, Any]]] = []
        metrics = doc.get("metrics")
        if isinstance(metrics, Mapping):
            stored.extend(standard_values(metrics))
        custom = doc.get("custom_metrics")
        dropped = 0
        if isinstance(custom, Mapping):
            with self._lock:
                types = {name: d.type for name, d in self._state.metrics.items()}
            for name, raw in custom.items():
                value = self._custom_value(raw, types.get(name))
                if value is None:
                    dropped += 1
                    log.info(
                        "Dropped custom metric %r of thing %r (not defined with that type, or invalid)",
                        name,
                        thing_name,
                    )
                else:
                    stored.append((name, value))
        with self._lock:
            self._state.dropped += dropped
            for metric, value in stored:
                self._state.values.setdefault((thing_name, metric), []).append(Datum(received_at_ms, value))

    @staticmethod
    def _custom_value(raw: Any, defined_type: Optional[str]) -> Optional[Dict[str, Any]]:
        """The MetricValue the service stores (numbers as floats), or None when it drops the value."""
        try:
            mtype = MetricType(defined_type) if defined_type is not None else None
        except ValueError:
            return None
        value = custom_value(raw, mtype)
        if value is None:
            return None
        ((key, inner),) = value.items()
        if mtype is MetricType.NUMBER:
            return {key: float(inner)}
        return {key: [float(v) for v in inner] if mtype is MetricType.NUMBER_LIST else list(inner)}


def token_digest(*parts: str) -> str:
    """A short stable digest, used for opaque pagination tokens."""
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:16]
