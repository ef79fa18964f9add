"""Bootstrap plans and outcomes as text for people: one line per step, one summary line.

Pure functions over :mod:`agent.control.bootstrap`'s steps and outcomes; the
``bootstrap`` command prints them.
"""

from __future__ import annotations

from typing import Dict, Sequence, Tuple

from agent.control.bootstrap import Action, Outcome, Step


def describe_step(step: Step) -> str:
    """One plan line for people: ``create     cpu_usage: number in percent, display name 'CPU'``."""
    want, have = step.desired, step.current
    if step.action is Action.CREATE and want is not None:
        extra = f" in {want.unit}" if want.unit else ""
        extra += f", display name {want.display_name!r}" if want.display_name else ""
        extra += f", {len(want.tags)} tag(s)" if want.tags else ""
        text = f"{want.type}{extra}"
    elif step.action is Action.UPDATE and want is not None and have is not None:
        text = f"display name {have.display_name or ''!r} -> {want.display_name!r}"
    elif step.action is Action.UNCHANGED and want is not None:
        text = want.type + (f" in {want.unit}" if want.unit else "")
    elif step.action is Action.REPLACE and want is not None and have is not None:
        text = f"type {have.type} -> {want.type}: delete and recreate (stored values are lost)"
    elif step.action is Action.DELETE:
        text = "not declared in this config"
    else:
        text = step.detail
    return f"{step.action.value:<10} {step.name}: {text}"


def summary(outcomes: Sequence[Outcome]) -> Tuple[str, bool]:
    """(one summary line, everything in place?)."""
    counts: Dict[str, int] = {}
    for o in outcomes:
        key = "failed" if not o.ok else o.step.action.value
        counts[key] = counts.get(key, 0) + 1
    order = ("create", "update", "replace", "delete", "unchanged", "failed")
    words = {
        "create": "created",
        "update": "updated",
        "replace": "replaced",
        "delete": "deleted",
        "unchanged": "unchanged",
        "failed": "failed",
    }
    parts = [f"{counts[k]} {words[k]}" for k in order if counts.get(k)]
    ok = not counts.get("failed")
    return ("; ".join(parts) or "no custom metrics declared"), ok
