"""Security profiles from the control plane, as config YAML for on-device behaviors (`behaviors pull`).

:func:`fetch_profile` (``describe_security_profile``) and :func:`list_profile_names`
(the ``list_security_profiles`` paginator, resumed from the last good page) retry
throttling and internal failures with the policy of :mod:`agent.control.aws`;
every other failure is one :class:`ControlPlaneError` line.

:func:`behaviors_yaml` is pure: it renders the profile's behaviors, keys as the
API spells them, under ``behaviors:``. A behavior the device cannot evaluate
(a cloud-side metric, a statistical threshold, ML Detect: what
:func:`agent.behaviors.check.device_support` names) is still written, as YAML
comments under its reason, so that the block loads as it is and shows what was left out.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any, Dict, List, Mapping, Optional, Sequence

import yaml

from agent.behaviors.check import device_support
from agent.control.aws import RetryPolicy, call, client_error_message, error_code, paginate
from agent.errors import ControlPlaneError

log = logging.getLogger("agent.control.profiles")

LIST_HINT = "`defender-agent behaviors pull` without --security-profile lists the profiles"


def fetch_profile(client: Any, name: str, policy: RetryPolicy) -> Dict[str, Any]:
    """The DescribeSecurityProfile output for ``name`` (without ResponseMetadata)."""
    from botocore.exceptions import ClientError

    try:
        response: Dict[str, Any] = call(
            client.describe_security_profile, f"describe security profile {name}", policy, securityProfileName=name
        )
    except ClientError as exc:
        message = client_error_message(exc, f"security profile {name!r}")
        if error_code(exc) == "ResourceNotFoundException":
            message += f"; {LIST_HINT}"
        raise ControlPlaneError(message) from None
    response.pop("ResponseMetadata", None)
    return response


def list_profile_names(client: Any, policy: RetryPolicy, page_size: Optional[int] = None) -> List[str]:
    """Every security profile's name in the account and region, in the service's order."""
    found = paginate(client, "list_security_profiles", "securityProfileIdentifiers", {}, "list security profiles",
                     policy, page_size)
    return [str(p["name"]) for p in found]


def device_notes(behaviors: Sequence[Mapping[str, Any]]) -> Dict[int, str]:
    """Index -> why that behavior cannot be evaluated on the device, for each one that cannot."""
    notes: Dict[int, str] = {}
    for index, behavior in enumerate(behaviors):
        reason = device_support(behavior) if isinstance(behavior, Mapping) else "not a behavior object"
        if reason is not None:
            notes[index] = reason
    return notes


class _Dumper(yaml.SafeDumper):
    """Block style, except lists of scalars (ports, cidrs, strings) on one line: ``ports: [22, 443]``."""


def _represent_list(dumper: yaml.SafeDumper, data: List[Any]) -> yaml.Node:
    flat = all(not isinstance(item, (list, dict)) for item in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flat)


_Dumper.add_representer(list, _represent_list)


def _item(behavior: Mapping[str, Any]) -> List[str]:
    """One behavior as the lines of a YAML list item, unindented."""
    text = yaml.dump([_plain(behavior)], Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                     allow_unicode=True, width=1000)
    return text.rstrip("\n").split("\n")


def _plain(value: Any) -> Any:
    """Mappings and sequences as dict and list (what the dumper represents), recursively."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def behaviors_yaml(
    profile_name: str,
    behaviors: Sequence[Mapping[str, Any]],
    notes: Mapping[int, str],
    *,
    arn: Optional[str] = None,
    version: Optional[int] = None,
    pulled_at: Optional[dt.datetime] = None,
) -> str:
    """A ``behaviors:`` block for agent.yaml; ``notes[i]`` is why behavior ``i`` cannot run on the device.

    Noted behaviors are written commented out, below ``# Not evaluated on the device: REASON``.
    When none is left uncommented the block is ``behaviors: []``, so it still loads.
    """
    when = (pulled_at or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc)
    source = f"security profile {profile_name}"
    details = [f"ARN {arn}" if arn else "", f"version {version}" if version is not None else ""]
    details = [d for d in details if d]
    lines = [
        f"# Behaviors of {source}" + (f" ({', '.join(details)})" if details else ""),
        f"# pulled {when.strftime('%Y-%m-%dT%H:%M:%SZ')} by `defender-agent behaviors pull`.",
    ]
    skipped = sorted(i for i in notes if 0 <= i < len(behaviors))
    if skipped:
        lines.append(f"# {len(skipped)} of {len(behaviors)} behavior(s) cannot be evaluated on the device:")
        lines.append("# they stay in the cloud profile and are commented out here, each under its reason.")
    runnable = len(behaviors) - len(skipped)
    lines.append("behaviors:" if runnable else "behaviors: []")
    for index, behavior in enumerate(behaviors):
        item = _item(behavior)
        if index in notes:
            lines.append(f"  # Not evaluated on the device: {_one_line(notes[index])}")
            lines.extend(f"  # {line}" for line in item)
        else:
            lines.extend(f"  {line}" for line in item)
    return "\n".join(lines) + "\n"
