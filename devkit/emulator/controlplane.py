"""A local AWS IoT control plane for custom metrics and security profiles, spoken as boto3 speaks it.

moto implements none of these operations, so the emulator serves them itself
over the IoT REST API (protocol ``rest-json``), routed as botocore's model routes them::

    POST|GET|PATCH|DELETE /custom-metric/{metricName}     create / describe / update / delete
    GET /custom-metrics                                    list_custom_metrics
    GET /metric-values?thingName=..&metricName=..          list_metric_values
    POST|GET|DELETE /security-profiles/{name}              create / describe / delete_security_profile
    GET /security-profiles?metricName=..|dimensionName=..  list_security_profiles
    POST /security-profile-behaviors/validate              validate_security_profile_behaviors

Errors are the modelled ones (``x-amzn-ErrorType`` header and a JSON
``message``) so boto3 raises its real exception classes. Input is validated
against botocore's service model (:mod:`devkit.emulator.apimodel`). Lists page
with a small page size so that clients exercise pagination.

Behaviors (CreateSecurityProfile, ValidateSecurityProfileBehaviors) are checked with
the rules the agent applies when it loads them (:func:`agent.behaviors.check.validation_errors`,
with the account's custom metrics as the declared ones), minus what the agent refuses
only because a device cannot evaluate it: a statisticalThreshold, ML Detect
(mlDetectionConfig), a metricDimension, a behavior without criteria and a cloud-side
metric are all valid in the cloud, so the emulator accepts them as AWS does, and
``behaviors pull`` names them (:func:`agent.behaviors.check.device_support`). Validate
answers ``{"valid": bool, "validationErrors": [{"errorMessage": "PATH: message"}]}``;
Create refuses invalid behaviors, and a metricDimension naming a dimension the store does
not have, with InvalidRequestException. A profile keeps its name,
description and behaviors as sent, at version 1; alert targets, metrics to retain,
tags and the metrics export config are accepted and not kept.

An account without Detect (``detect_available=False``; ``python -m devkit emulator --no-detect``):
since 2026-08-31 AWS answers every Detect API of a new account with HTTP 401,
``x-amzn-ErrorType: UnauthorizedException`` and :data:`DETECT_CLOSED_MESSAGE` (as recorded
by third parties against ListSecurityProfiles; ../shared/SPEC.md expects the same from the
other Detect APIs). Every operation this server routes is a Detect API, so each answers
exactly so, before its input is looked at.

Test hooks: :meth:`ControlPlaneServer.inject_errors` makes the next N requests
fail with ThrottlingException (or another modelled error), and
``POST /_emulator/inject?code=ThrottlingException&count=N`` does the same over HTTP.
``requests`` records (operation, status) of every request served.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple
from urllib.parse import parse_qs, urlsplit

from agent.behaviors.check import (
    DIMENSION_REASON,
    ML_REASON,
    NO_CRITERIA_REASON,
    STATISTICAL_REASON,
    cloud_side_reason,
    validation_errors,
)
from agent.behaviors.model import CLOUD_SIDE_METRICS
from devkit.emulator.apimodel import ServiceModel
from devkit.emulator.httpserver import LoopbackServer
from devkit.emulator.restjson import datum, definition, page, route, security_profile, with_token
from devkit.emulator.store import ApiError, SecurityProfile, Store, invalid, not_found

log = logging.getLogger("devkit.emulator.controlplane")

PAGE_SIZE = 2
# Errors every AWS API may answer that the IoT model does not list (the API references' "Common Errors").
COMMON_ERRORS = {"AccessDeniedException": 403}
DETECT_CLOSED_MESSAGE = (
    "This feature is no longer available to new customers. For more information, see "
    "https://docs.aws.amazon.com/iot-device-defender/latest/devguide/dd-detect-availability-change.html"
)


class ControlPlaneServer(LoopbackServer):
    """The control plane on a loopback port. ``port=0`` picks a free one; see :attr:`url`."""

    label = "Control plane"

    def __init__(
        self,
        store: Store,
        host: str = "127.0.0.1",
        port: int = 0,
        page_size: int = PAGE_SIZE,
        model: Optional[ServiceModel] = None,
        detect_available: bool = True,
    ) -> None:
        self.store = store
        self.detect_available = detect_available  # False: an account opened after Detect closed
        self.page_size = page_size
        self.model = model or ServiceModel()  # loading it takes ~0.4 s; tests share one
        self._lock = threading.Lock()
        self._injected: List[Tuple[str, Optional[str]]] = []
        self.requests: List[Tuple[str, int]] = []
        self._serve(self._answer, host, port)

    # -- test hooks -----------------------------------------------------------------

    def inject_errors(
        self, count: int, code: str = "ThrottlingException", operation: Optional[str] = None
    ) -> None:
        """Fail the next ``count`` requests (of ``operation``, or any) with the modelled (or common) error ``code``."""
        self.error_status(code)  # KeyError for a code neither the model nor the common errors know
        with self._lock:
            self._injected.extend([(code, operation)] * count)

    def error_status(self, code: str) -> int:
        return COMMON_ERRORS[code] if code in COMMON_ERRORS else self.model.error_status(code)

    def calls(self, operation: Optional[str] = None) -> List[Tuple[str, int]]:
        with self._lock:
            return [r for r in self.requests if operation is None or r[0] == operation]

    def _take_injected(self, operation: str) -> Optional[str]:
        with self._lock:
            for index, (code, only) in enumerate(self._injected):
                if only is None or only == operation:
                    del self._injected[index]
                    return code
        return None

    def _record(self, operation: str, status: int) -> None:
        with self._lock:
            self.requests.append((operation, status))

    # -- dispatch -------------------------------------------------------------------

    def _answer(self, method: str, raw_path: str, body: bytes) -> Tuple[int, Dict[str, str], bytes]:
        status, headers, document = self.handle(method, raw_path, body)
        return status, headers, json.dumps(document).encode()

    def handle(self, method: str, raw_path: str, body: bytes) -> Tuple[int, Dict[str, str], Dict[str, Any]]:
        """One request -> (status, extra headers, JSON body). Never raises."""
        split = urlsplit(raw_path)
        query = parse_qs(split.query, keep_blank_values=True)
        operation = "Unknown"
        try:
            if method == "POST" and split.path == "/_emulator/inject":
                count = int(query.get("count", ["1"])[-1])
                self.inject_errors(
                    count, query.get("code", ["ThrottlingException"])[-1], query.get("operation", [None])[-1]
                )
                return 200, {}, {"injected": count}
            operation, uri = route(method, split.path)
            if not self.detect_available:
                raise ApiError("UnauthorizedException", self.model.error_status("UnauthorizedException"),
                               DETECT_CLOSED_MESSAGE)
            injected = self._take_injected(operation)
            if injected is not None:
                raise ApiError(injected, self.error_status(injected), _injected_message(injected, operation))
            try:
                document = json.loads(body.decode("utf-8")) if body.strip() else {}
            except (UnicodeDecodeError, ValueError):
                raise invalid("The request body is not valid JSON") from None
            if not isinstance(document, dict):
                raise invalid("The request body must be a JSON object")
            params, problems = self.model.parse_input(operation, uri, query, document)
            if problems:
                count = len(problems)
                raise invalid(
                    f"{count} validation error{'s' if count > 1 else ''} detected: " + "; ".join(problems)
                )
            result = _OPERATIONS[operation](self, params)
            self._record(operation, 200)
            return 200, {}, result
        except ApiError as exc:
            self._record(operation, exc.status)
            log.debug("%s %s -> %s %s", method, raw_path, exc.code, exc.message)
            return exc.status, {"x-amzn-ErrorType": exc.code}, {"message": exc.message, **exc.extra}
        except Exception as exc:  # a bug in the emulator: report it the way the service would
            log.exception("Control plane failed on %s %s", method, raw_path)
            self._record(operation, 500)
            return (
                500,
                {"x-amzn-ErrorType": "InternalFailureException"},
                {"message": f"emulator error: {exc}"},
            )

    # -- operations -----------------------------------------------------------------

    def _create(self, p: Mapping[str, Any]) -> Dict[str, Any]:
        tags = [(t["Key"], t.get("Value", "")) for t in p.get("tags") or ()]
        d = self.store.create_metric(
            p["metricName"], p["metricType"], p.get("displayName"), tags, p["clientRequestToken"]
        )
        return {"metricName": d.name, "metricArn": d.arn}

    def _describe(self, p: Mapping[str, Any]) -> Dict[str, Any]:
        return definition(self.store.describe_metric(p["metricName"]))

    def _update(self, p: Mapping[str, Any]) -> Dict[str, Any]:
        return definition(self.store.update_display_name(p["metricName"], p["displayName"]))

    def _delete(self, p: Mapping[str, Any]) -> Dict[str, Any]:
        self.store.delete_metric(p["metricName"])
        return {}

    def _list_metrics(self, p: Mapping[str, Any]) -> Dict[str, Any]:
        names, token = page(self.store.metric_names(), p, "metrics", self.page_size)
        return with_token({"metricNames": names}, token)

    def _list_profiles(self, p: Mapping[str, Any]) -> Dict[str, Any]:
        metric, dimension = p.get("metricName"), p.get("dimensionName")
        if metric and dimension:
            raise invalid("Only one of metricName and dimensionName may be given")
        if dimension and not self.store.has_dimension(dimension):
            raise not_found(f"Dimension {dimension} does not exist")
        names = self.store.security_profiles(metric, dimension)
        items, token = page(names, p, f"profiles:{metric or ''}:{dimension or ''}", self.page_size)
        identifiers = [{"name": n, "arn": SecurityProfile.arn_of(n)} for n in items]
        return with_token({"securityProfileIdentifiers": identifiers}, token)

    def _create_profile(self, p: Mapping[str, Any]) -> Dict[str, Any]:
        behaviors = p.get("behaviors") or []
        for behavior in behaviors:
            dimension = (behavior.get("metricDimension") or {}).get("dimensionName")
            if dimension and not self.store.has_dimension(dimension):
                raise invalid(f"Dimension {dimension} of behavior {behavior['name']} does not exist")
        errors = self._behavior_errors(behaviors)
        if errors:
            raise invalid("Invalid behaviors: " + "; ".join(errors))
        profile = self.store.create_security_profile(
            p["securityProfileName"], p.get("securityProfileDescription"), behaviors
        )
        return {"securityProfileName": profile.name, "securityProfileArn": profile.arn}

    def _describe_profile(self, p: Mapping[str, Any]) -> Dict[str, Any]:
        return security_profile(self.store.describe_security_profile(p["securityProfileName"]))

    def _delete_profile(self, p: Mapping[str, Any]) -> Dict[str, Any]:
        self.store.delete_security_profile(p["securityProfileName"], p.get("expectedVersion"))
        return {}

    def _validate_behaviors(self, p: Mapping[str, Any]) -> Dict[str, Any]:
        errors = self._behavior_errors(p["behaviors"])
        return {"valid": not errors, "validationErrors": [{"errorMessage": e} for e in errors]}

    def _behavior_errors(self, behaviors: Sequence[Mapping[str, Any]]) -> List[str]:
        """What the service would refuse in ``behaviors``, one message each (see the module docstring)."""
        problems = validation_errors(behaviors, self.store.metric_types())
        return [f"{path}: {message}" for path, message in problems if not _device_only(message)]

    def _list_values(self, p: Mapping[str, Any]) -> Dict[str, Any]:
        metric = p["metricName"]
        if not metric.startswith("aws:"):
            self.store.describe_metric(metric)  # ResourceNotFoundException for an unknown custom metric
        start, end = p["startTime"], p["endTime"]
        if end < start:
            raise invalid("endTime must not be before startTime")
        data = self.store.metric_values(
            p["thingName"], metric, int(start.timestamp() * 1000), int(end.timestamp() * 1000)
        )
        dimension = p.get("dimensionName")
        if dimension is not None:
            if not self.store.has_dimension(dimension):
                raise not_found(f"Dimension {dimension} does not exist")
            # Stored values carry no dimension: IN matches none, NOT_IN (the service's other choice) all.
            if p.get("dimensionValueOperator", "IN") == "IN":
                data = []
        scope = f"values:{p['thingName']}:{metric}:{start.isoformat()}:{end.isoformat()}"
        items, token = page(data, p, scope, self.page_size)
        return with_token({"metricDatumList": [datum(d) for d in items]}, token)


# What the agent refuses only because a device cannot evaluate it; the service accepts all of these.
_DEVICE_ONLY_REASONS = (
    STATISTICAL_REASON,
    ML_REASON,
    DIMENSION_REASON,
    NO_CRITERIA_REASON,
    *(cloud_side_reason(metric) for metric in CLOUD_SIDE_METRICS),
)


def _injected_message(code: str, operation: str) -> str:
    if code == "ThrottlingException":
        return "Rate exceeded"
    if code == "AccessDeniedException":  # as IAM words a denied action
        return (f"User: arn:aws:iam::123456789012:user/operator is not authorized to perform: iot:{operation} "
                "because no identity-based policy allows the iot:" + operation + " action")
    return "Injected by the emulator"


def _device_only(message: str) -> bool:
    return any(message.endswith(reason) for reason in _DEVICE_ONLY_REASONS)


_OPERATIONS: Dict[str, Callable[[ControlPlaneServer, Mapping[str, Any]], Dict[str, Any]]] = {
    "CreateCustomMetric": ControlPlaneServer._create,
    "DescribeCustomMetric": ControlPlaneServer._describe,
    "UpdateCustomMetric": ControlPlaneServer._update,
    "DeleteCustomMetric": ControlPlaneServer._delete,
    "ListCustomMetrics": ControlPlaneServer._list_metrics,
    "ListMetricValues": ControlPlaneServer._list_values,
    "ListSecurityProfiles": ControlPlaneServer._list_profiles,
    "CreateSecurityProfile": ControlPlaneServer._create_profile,
    "DescribeSecurityProfile": ControlPlaneServer._describe_profile,
    "DeleteSecurityProfile": ControlPlaneServer._delete_profile,
    "ValidateSecurityProfileBehaviors": ControlPlaneServer._validate_behaviors,
}
