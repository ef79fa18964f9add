"""Register the config's custom metrics with AWS IoT, idempotently (``defender-agent bootstrap``).

Three steps, so that the decision is a pure function that tests can drive:

1. :func:`gather` reads the cloud: ``describe_custom_metric`` per declared metric,
   ``list_custom_metrics`` when pruning, ``list_security_profiles`` for metrics that
   would be deleted.
2. :func:`plan` compares declared and described definitions and decides one
   :class:`Step` per metric: create, update (display name), unchanged, conflict
   (type differs), replace (delete and recreate), delete (prune), blocked.
3. :func:`execute` carries the steps out with retries; every step ends ok or failed
   with a one-line message.

The client request token of a create is derived from the definition
(:func:`request_token`), so a create retried after a lost response is recognised
by the service instead of failing with ResourceAlreadyExistsException.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from agent.config.model import CustomMetricConfig
from agent.control.aws import RetryPolicy, call, client_error_message, error_code
from agent.errors import ControlPlaneError
from agent.schema import TextEnum

log = logging.getLogger("agent.control.bootstrap")


@dataclass(frozen=True)
class Definition:
    """A custom metric as the service knows it; tags are sorted (key, value) pairs."""

    name: str
    type: str
    display_name: Optional[str] = None
    tags: Tuple[Tuple[str, str], ...] = ()
    unit: Optional[str] = field(default=None, compare=False)  # for people: the service stores no unit

    @classmethod
    def from_config(cls, metric: CustomMetricConfig) -> Definition:
        return cls(metric.name, metric.type.value, metric.display_name, tuple(sorted(metric.tags.items())),
                   metric.unit)


def request_token(definition: Definition) -> str:
    """A deterministic clientRequestToken (``[a-zA-Z0-9-_]{1,64}``) for this exact definition."""
    canonical = json.dumps(
        [definition.name, definition.type, definition.display_name, [list(t) for t in definition.tags]],
        separators=(",", ":"),
    )
    return "da-" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:48]


class Action(TextEnum):
    CREATE = "create"
    UPDATE = "update"
    UNCHANGED = "unchanged"
    CONFLICT = "conflict"
    REPLACE = "replace"
    DELETE = "delete"
    BLOCKED = "blocked"
    FAILED = "failed"  # the cloud state could not be read


@dataclass(frozen=True)
class Step:
    name: str
    action: Action
    desired: Optional[Definition] = None
    current: Optional[Definition] = None
    detail: str = ""

    @property
    def fails(self) -> bool:
        return self.action in (Action.CONFLICT, Action.BLOCKED, Action.FAILED)


@dataclass
class CloudState:
    """What :func:`gather` found. ``current[name]`` is None when the metric does not exist."""

    current: Dict[str, Optional[Definition]] = field(default_factory=dict)
    cloud_names: Optional[List[str]] = None  # all metrics in the account; read only with prune
    used_by: Dict[str, List[str]] = field(default_factory=dict)  # metric -> security profiles
    errors: Dict[str, str] = field(default_factory=dict)  # metric -> why it could not be read


def plan(
    desired: Sequence[Definition],
    state: CloudState,
    replace_changed_types: bool = False,
    prune: bool = False,
) -> List[Step]:
    """Decide what to do for each metric. Pure: no I/O."""
    steps: List[Step] = []
    for want in desired:
        if want.name in state.errors:
            steps.append(Step(want.name, Action.FAILED, want, detail=state.errors[want.name]))
            continue
        have = state.current.get(want.name)
        if have is None:
            steps.append(Step(want.name, Action.CREATE, want))
        elif have.type != want.type:
            steps.append(_type_change(want, have, state, replace_changed_types))
        elif want.display_name is not None and want.display_name != (have.display_name or ""):
            steps.append(Step(want.name, Action.UPDATE, want, have))
        else:
            steps.append(Step(want.name, Action.UNCHANGED, want, have))
    if prune and state.cloud_names is not None:
        declared = {d.name for d in desired}
        for name in sorted(set(state.cloud_names) - declared):
            users = state.used_by.get(name, [])
            if users:
                steps.append(
                    Step(
                        name,
                        Action.BLOCKED,
                        detail=f"not deleted: used by security profile(s) "
                        f"{', '.join(users)}; remove it from them first",
                    )
                )
            else:
                steps.append(Step(name, Action.DELETE))
    return steps


def _type_change(want: Definition, have: Definition, state: CloudState, replace: bool) -> Step:
    if not replace:
        return Step(
            want.name,
            Action.CONFLICT,
            want,
            have,
            detail=f"the cloud has type {have.type}, the config declares {want.type}; a type cannot change. "
            f"Delete and recreate the metric (its stored values are lost): "
            f"defender-agent bootstrap --replace-changed-types",
        )
    users = state.used_by.get(want.name, [])
    if users:
        return Step(
            want.name,
            Action.BLOCKED,
            want,
            have,
            detail=f"type {have.type} -> {want.type} needs delete and recreate, but security profile(s) "
            f"{', '.join(users)} use the metric; remove it from them first",
        )
    return Step(want.name, Action.REPLACE, want, have)


def gather(
    client: Any,
    desired: Sequence[Definition],
    policy: RetryPolicy,
    replace_changed_types: bool = False,
    prune: bool = False,
) -> CloudState:
    """Read the cloud state the plan needs (read-only calls)."""
    from botocore.exceptions import ClientError

    state = CloudState()
    for want in desired:
        try:
            described = call(
                client.describe_custom_metric, f"describe {want.name}", policy, metricName=want.name
            )
            state.current[want.name] = Definition(
                described["metricName"], described["metricType"], described.get("displayName")
            )
        except ClientError as exc:
            if error_code(exc) == "ResourceNotFoundException":
                state.current[want.name] = None
            else:
                state.errors[want.name] = client_error_message(exc, f"describe {want.name}")
    to_check: List[str] = []
    if replace_changed_types:
        to_check += [
            w.name for w in desired if (c := state.current.get(w.name)) is not None and c.type != w.type
        ]
    if prune:
        state.cloud_names = _all_metric_names(client, policy)
        declared = {w.name for w in desired}
        to_check += [n for n in state.cloud_names if n not in declared]
    for name in to_check:
        state.used_by[name] = _profiles_using(client, name, policy)
    return state


def _all_metric_names(client: Any, policy: RetryPolicy) -> List[str]:
    from botocore.exceptions import ClientError

    names: List[str] = []
    token: Optional[str] = None
    try:
        while True:
            kwargs: Dict[str, Any] = {"nextToken": token} if token else {}
            page = call(client.list_custom_metrics, "list custom metrics", policy, **kwargs)
            names.extend(page.get("metricNames", []))
            token = page.get("nextToken")
            if not token:
                return names
    except ClientError as exc:
        raise ControlPlaneError(client_error_message(exc, "list custom metrics (for --prune)")) from None


def _profiles_using(client: Any, metric: str, policy: RetryPolicy) -> List[str]:
    from botocore.exceptions import ClientError

    names: List[str] = []
    token: Optional[str] = None
    try:
        while True:
            kwargs: Dict[str, Any] = {"metricName": metric}
            if token:
                kwargs["nextToken"] = token
            page = call(
                client.list_security_profiles, f"list security profiles using {metric}", policy, **kwargs
            )
            names.extend(p["name"] for p in page.get("securityProfileIdentifiers", []))
            token = page.get("nextToken")
            if not token:
                return names
    except ClientError as exc:
        # Accounts without Device Defender Detect may refuse this; do not delete on a guess.
        return [f"<unknown: {client_error_message(exc, 'list security profiles')}>"]


@dataclass(frozen=True)
class Outcome:
    step: Step
    ok: bool
    message: str


def execute(client: Any, steps: Iterable[Step], policy: RetryPolicy) -> List[Outcome]:
    """Carry out the steps; one failure does not stop the others."""
    from botocore.exceptions import ClientError

    outcomes: List[Outcome] = []
    for step in steps:
        if step.fails:
            outcomes.append(Outcome(step, False, step.detail))
            continue
        try:
            outcomes.append(Outcome(step, True, _apply(client, step, policy)))
        except ClientError as exc:
            outcomes.append(
                Outcome(step, False, client_error_message(exc, f"{step.action.value} {step.name}"))
            )
    return outcomes


def _apply(client: Any, step: Step, policy: RetryPolicy) -> str:
    if step.action is Action.CREATE and step.desired is not None:
        return _create(client, step.desired, policy)
    if step.action is Action.UPDATE and step.desired is not None and step.desired.display_name is not None:
        call(
            client.update_custom_metric,
            f"update {step.name}",
            policy,
            metricName=step.name,
            displayName=step.desired.display_name,
        )
        return "display name updated"
    if step.action is Action.REPLACE and step.desired is not None:
        call(client.delete_custom_metric, f"delete {step.name}", policy, metricName=step.name)
        _create(client, step.desired, policy)
        return "deleted and recreated with the new type"
    if step.action is Action.DELETE:
        call(client.delete_custom_metric, f"delete {step.name}", policy, metricName=step.name)
        return "deleted (no longer declared)"
    return "in place"


def _create(client: Any, want: Definition, policy: RetryPolicy) -> str:
    from botocore.exceptions import ClientError

    kwargs: Dict[str, Any] = {
        "metricName": want.name,
        "metricType": want.type,
        "clientRequestToken": request_token(want),
    }
    if want.display_name is not None:
        kwargs["displayName"] = want.display_name
    if want.tags:
        kwargs["tags"] = [{"Key": k, "Value": v} for k, v in want.tags]
    try:
        call(client.create_custom_metric, f"create {want.name}", policy, **kwargs)
    except ClientError as exc:
        if error_code(exc) != "ResourceAlreadyExistsException":
            raise
        # Created meanwhile by someone else (another token): accept it when it is the same type.
        try:
            what = f"describe {want.name}"
            described = call(client.describe_custom_metric, what, policy, metricName=want.name)
        except ClientError:
            raise exc from None
        if described.get("metricType") != want.type:
            raise
        log.info("Custom metric %r appeared while creating it; it has the declared type", want.name)
        return "already existed with the declared type"
    return "created"
