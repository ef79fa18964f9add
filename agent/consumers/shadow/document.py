"""The named shadow's ``state.reported``: built from what the agent knows, diffed, kept within AWS's limits.

Pure: no I/O, no clock. :func:`build` turns :class:`Facts` into the reported object the fleet
indexes (docs/FLEET.md lists every field and its type); :func:`diff` turns the reported state the
shadow holds and the one wanted into the update's ``reported`` (only what changed, ``null`` for a
key that went away, as the shadow service deletes fields); :func:`leaf_paths` names what changed so
the pace (:mod:`agent.consumers.shadow.rate`) can tell an alarm from a timestamp.

Limits (SPEC.md "Named shadow", from the AWS IoT developer guide): desired and reported together
at most 8 KB (metadata not counted); nesting depth: AWS's pages say 5, 6 and 8, so the fleet
fields stay at 5 levels or fewer (the reported object itself is level 1). The echo of the remote
config is exempt from that rule: it has the very shape of the desired state the service already
accepted, at the same path, so it is no deeper than what the service takes, and leaving a deep key
(a behavior's ``value.ports`` list is 6 levels) out of the echo would leave its delta standing for
good (``hasDelta`` true on every gateway). The fleet fields are bounded by construction (lists of
at most :data:`MAX_NAMES` names of at most :data:`MAX_NAME_CHARS` characters); the echo is what can
grow, so when desired + reported would pass the budget the largest echo keys go first, then the
lists are cut (their counts stay true). What was left out is named in ``config.echo_omitted``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

MAX_STATE_BYTES = 8 * 1024  # desired + reported together (diagnosing-shadows)
MARGIN_BYTES = 512  # headroom for what the service counts and this does not (key order, number spelling)
MAX_DEPTH = 5  # the fleet fields' levels of objects and arrays, the reported object being level 1
MAX_NAMES = 25  # items of a list of names in reported (behaviors in alarm, failing collectors or sinks)
MAX_NAME_CHARS = 128  # a behavior, collector or sink name is cut to this many characters
MAX_OMITTED = 10  # entries of config.echo_omitted

# Fields whose change alone is routine (paced by rate.ROUTINE_MIN); every other change is urgent.
ROUTINE_LEAVES = frozenset({("report", "last_at"), ("outbox", "pending")})
# The objects the fleet fields live in: an echo of an agent.yaml key with the same name merges into them
# (violations.security_profile_name beside violations.active); on a clash of leaves the fleet field wins.
FLEET_KEYS = ("agent", "health", "violations", "config", "report", "outbox")


@dataclass(frozen=True)
class Facts:
    """What the reported state says, gathered by the consumer."""

    version: str  # agent.__version__
    failing_collectors: Tuple[str, ...] = ()  # names, sorted
    failing_sinks: Tuple[str, ...] = ()
    alarms: Tuple[str, ...] = ()  # behaviors in alarm, sorted
    last_report_at: Optional[int] = None  # epoch seconds of the last round; None before the first
    outbox_pending: int = 0
    remote_config: bool = False  # shadow.remote_config
    desired_version: Optional[int] = None  # the shadow version whose desired state is applied
    refused: Mapping[str, str] = field(default_factory=dict)  # dotted key path -> reason
    echo: Mapping[str, Any] = field(default_factory=dict)  # the remote keys in effect, nested as agent.yaml


@dataclass(frozen=True)
class Built:
    reported: Dict[str, Any]
    omitted: Tuple[str, ...]  # echo paths left out (depth or size)
    cut: bool  # a list of names was cut below MAX_NAMES to fit


def size_of(value: Any) -> int:
    """UTF-8 bytes of ``value`` as compact JSON (how the limit is measured here)."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def depth(value: Any) -> int:
    """Levels of objects and arrays: a scalar is 0, ``{"a": 1}`` is 1, ``{"a": [1]}`` is 2."""
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


def _names(names: Sequence[str], limit: int) -> List[str]:
    return [n[:MAX_NAME_CHARS] for n in names[:limit]]


def _fleet(facts: Facts, limit: int, omitted: Sequence[str]) -> Dict[str, Any]:
    config: Dict[str, Any] = {"remote": facts.remote_config, "refused": {
        k[:MAX_NAME_CHARS]: str(v)[:MAX_NAME_CHARS] for k, v in sorted(facts.refused.items())[:MAX_NAMES]}}
    if facts.desired_version is not None:
        config["desired_version"] = facts.desired_version
    if omitted:
        config["echo_omitted"] = list(omitted[:MAX_OMITTED])
    out: Dict[str, Any] = {
        "agent": {"version": facts.version},
        "health": {
            "ok": not facts.failing_collectors and not facts.failing_sinks,
            "collectors_failing": len(facts.failing_collectors),
            "failing_collectors": _names(facts.failing_collectors, limit),
            "sinks_failing": len(facts.failing_sinks),
            "failing_sinks": _names(facts.failing_sinks, limit),
        },
        "violations": {"active": len(facts.alarms), "behaviors": _names(facts.alarms, limit)},
        "config": config,
        "outbox": {"pending": facts.outbox_pending},
    }
    if facts.last_report_at is not None:
        out["report"] = {"last_at": facts.last_report_at}
    return out


def _echo_items(echo: Mapping[str, Any]) -> List[Tuple[Tuple[str, ...], Any]]:
    """The echo as (path, value) items: a top-level key, or for a fleet object's name its sub-keys."""
    items: List[Tuple[Tuple[str, ...], Any]] = []
    for key, value in sorted(echo.items()):
        if key in FLEET_KEYS and isinstance(value, dict):
            items.extend(((key, sub), v) for sub, v in sorted(value.items()))
        else:
            items.append(((key,), value))
    return items


def _merge_echo(reported: Dict[str, Any], items: Sequence[Tuple[Tuple[str, ...], Any]]) -> None:
    for path, value in items:
        if len(path) == 1:
            if path[0] not in reported:
                reported[path[0]] = value
            continue
        top = reported.setdefault(path[0], {})
        if isinstance(top, dict) and path[1] not in top:
            top[path[1]] = value


def build(facts: Facts, desired_bytes: int = 0) -> Built:
    """The reported object for ``facts``, within the depth limit and within what ``desired_bytes`` (the
    desired section's size as last read) leaves of the 8 KB."""
    budget = MAX_STATE_BYTES - MARGIN_BYTES - desired_bytes
    items_kept: List[Tuple[Tuple[str, ...], Any]] = list(_echo_items(facts.echo))  # as deep as desired was
    omitted: List[str] = []
    limit = MAX_NAMES

    def assemble() -> Dict[str, Any]:
        reported = _fleet(facts, limit, omitted)
        _merge_echo(reported, items_kept)
        return reported

    reported = assemble()
    # The largest echo keys go first: the fleet fields are what the fleet queries.
    while size_of(reported) > budget and items_kept:
        largest = max(items_kept, key=lambda item: size_of(item[1]))
        items_kept.remove(largest)
        omitted.append(".".join(largest[0]))
        reported = assemble()
    while size_of(reported) > budget and limit > 0:
        limit //= 2
        reported = assemble()
    return Built(reported, tuple(omitted), limit < MAX_NAMES)


def _same(a: Any, b: Any) -> bool:
    """JSON equality (``true`` is not ``1``); an empty object equals an absent one (the service keeps no
    empty object, so ``config.refused: {}`` reads back as absent)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        keys = set(a) | set(b)
        return all(_same(a.get(k, _ABSENT), b.get(k, _ABSENT)) for k in keys)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if (a == {} and b is _ABSENT) or (b == {} and a is _ABSENT):
        return True
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and a == b


_ABSENT: Any = object()


def diff(held: Mapping[str, Any], wanted: Mapping[str, Any]) -> Dict[str, Any]:
    """The update that turns the reported state ``held`` into ``wanted``: changed and new fields, ``None``
    for fields of ``held`` that ``wanted`` lacks; objects compared field by field, arrays whole. Empty: no
    update needed."""
    out: Dict[str, Any] = {}
    for key, value in wanted.items():
        old = held.get(key, _ABSENT)
        if isinstance(value, dict) and isinstance(old, dict):
            sub = diff(old, value)
            if sub:
                out[key] = sub
        elif not _same(old, value):
            out[key] = value
    for key in held:
        if key not in wanted:
            out[key] = None
    return out


def leaf_paths(update: Mapping[str, Any], prefix: Tuple[str, ...] = ()) -> List[Tuple[str, ...]]:
    """The paths of the leaves an update sets or deletes (an object set whole counts by its leaves)."""
    out: List[Tuple[str, ...]] = []
    for key, value in update.items():
        if isinstance(value, dict) and value:
            out.extend(leaf_paths(value, (*prefix, key)))
        else:
            out.append((*prefix, key))
    return out


def is_routine(update: Mapping[str, Any]) -> bool:
    """True when every change of ``update`` is a routine field (last report time, outbox pending)."""
    return all(path in ROUTINE_LEAVES for path in leaf_paths(update))
