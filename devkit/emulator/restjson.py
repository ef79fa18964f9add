"""How the IoT REST API (``rest-json``) spells the emulator's requests and responses.

Pure functions: which operation a method and path name (the ``http`` traits of
botocore's IoT model), the JSON shapes of a metric definition, a metric datum and
a security profile, and opaque ``nextToken`` paging tied to the query it belongs to.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any, Dict, List, Mapping, Optional, Tuple
from urllib.parse import unquote

from devkit.emulator.store import ApiError, Datum, MetricDefinition, SecurityProfile, invalid, token_digest

# (path pattern, URI member) -> operation per method
_RESOURCES: Tuple[Tuple[re.Pattern[str], str, Dict[str, str]], ...] = (
    (
        re.compile(r"^/custom-metric/(?P<name>[^/]+)$"),
        "metricName",
        {
            "POST": "CreateCustomMetric",
            "GET": "DescribeCustomMetric",
            "PATCH": "UpdateCustomMetric",
            "DELETE": "DeleteCustomMetric",
        },
    ),
    (
        re.compile(r"^/security-profiles/(?P<name>[^/]+)$"),
        "securityProfileName",
        {
            "POST": "CreateSecurityProfile",
            "GET": "DescribeSecurityProfile",
            "DELETE": "DeleteSecurityProfile",
        },
    ),
)
_FIXED = {
    ("GET", "/custom-metrics"): "ListCustomMetrics",
    ("GET", "/metric-values"): "ListMetricValues",
    ("GET", "/security-profiles"): "ListSecurityProfiles",
    ("POST", "/security-profile-behaviors/validate"): "ValidateSecurityProfileBehaviors",
}


def route(method: str, path: str) -> Tuple[str, Dict[str, str]]:
    """(operation, URI members) for a request, or UnknownOperationException."""
    fixed = _FIXED.get((method, path))
    if fixed is not None:
        return fixed, {}
    for pattern, member, operations in _RESOURCES:
        match = pattern.match(path)
        if match and method in operations:
            return operations[method], {member: unquote(match.group("name"))}
    raise ApiError("UnknownOperationException", 404, f"No operation for {method} {path} in this emulator")


def definition(d: MetricDefinition) -> Dict[str, Any]:
    out: Dict[str, Any] = {
        "metricName": d.name,
        "metricArn": d.arn,
        "metricType": d.type,
        "creationDate": d.created,
        "lastModifiedDate": d.modified,
    }
    if d.display_name is not None:
        out["displayName"] = d.display_name
    return out


def security_profile(p: SecurityProfile) -> Dict[str, Any]:
    """DescribeSecurityProfile's output: behaviors as they were created, no alert targets."""
    out: Dict[str, Any] = {
        "securityProfileName": p.name,
        "securityProfileArn": p.arn,
        "behaviors": [dict(b) for b in p.behaviors],
        "alertTargets": {},
        "version": p.version,
        "creationDate": p.created,
        "lastModifiedDate": p.modified,
    }
    if p.description is not None:
        out["securityProfileDescription"] = p.description
    return out


def datum(d: Datum) -> Dict[str, Any]:
    return {"timestamp": d.timestamp_ms / 1000.0, "value": dict(d.value)}


def with_token(body: Dict[str, Any], token: Optional[str]) -> Dict[str, Any]:
    if token is not None:
        body["nextToken"] = token
    return body


def _encode_token(offset: int, scope: str) -> str:
    raw = json.dumps({"o": offset, "s": token_digest(scope)}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_token(token: Optional[str], scope: str) -> int:
    if not token:
        return 0
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        offset = int(data["o"])
        same_query = data["s"] == token_digest(scope)
    except (ValueError, KeyError, TypeError):
        raise invalid("The nextToken is not valid") from None
    if not same_query or offset < 0:
        raise invalid("The nextToken belongs to a different request")
    return offset


def page(items: List[Any], params: Mapping[str, Any], scope: str, page_size: int) -> Tuple[List[Any], Optional[str]]:
    """One page of ``items`` for ``maxResults``/``nextToken`` (capped at ``page_size``) and the next token."""
    size = min(int(params.get("maxResults") or page_size), page_size)
    offset = _decode_token(params.get("nextToken"), scope)
    following = offset + size
    return items[offset:following], _encode_token(following, scope) if following < len(items) else None
