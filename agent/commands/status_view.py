"""What `defender-agent status` shows, read from ``state_dir`` alone (no broker, no running agent needed)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from agent.config.model import VIOLATIONS_QUEUE
from agent.outbox.ids import read_last_id
from agent.outbox.messages import Messages, defender_counts, sink_counts
from agent.outbox.store import Outbox, ReportOutcome, open_readonly
from agent.remote.file import CorruptState, read_raw


def read_status(state_dir: Path, recent_rejections: int = 5) -> Dict[str, Any]:
    box = open_readonly(state_dir)
    out: Dict[str, Any] = {
        "state_dir": str(state_dir),
        "last_report_id": read_last_id(state_dir) or None,
        "last_report_at": None,
        "outcomes": dict.fromkeys(ReportOutcome, 0),
        "published": 0,
        "outbox_corrupt": 0,
        "pending": [],
        "last_rejections": [],
        "collectors": {},
        "connection": None,
        "updated_at": None,
        "sinks": [],
        "violations": {"active": [], "counts": {}},
        "remote": _remote(state_dir),
    }
    if box is None:
        return out
    try:
        counters = box.counters()
        meta = box.meta()
        for name in ReportOutcome:
            out["outcomes"][name] = counters.get(name, 0)
        out["published"] = counters.get("published", 0)
        out["outbox_corrupt"] = counters.get("outbox_corrupt", 0)
        out["last_report_id"] = meta.get("last_report_id", out["last_report_id"])
        out["last_report_at"] = meta.get("last_report_at")
        out["collectors"] = meta.get("collectors", {})
        out["connection"] = meta.get("connection")
        out["updated_at"] = meta.get("updated_at")
        out["pending"] = [
            {"report_id": p.report_id, "bytes": len(p.payload), "attempts": p.attempts, "created_at": p.created_at}
            for p in box.pending()
        ]
        out["last_rejections"] = [
            {"report_id": e.report_id, "code": e.code, "message": e.message, "at": e.finished_at}
            for e in box.ledger(limit=recent_rejections, outcome=ReportOutcome.REJECTED)
        ]
        out["sinks"] = _sinks(box, meta.get("sinks"), counters, out)
        if isinstance(meta.get("violations"), dict):
            out["violations"] = dict(meta["violations"])
            out["violations"]["events"] = {**sink_counts(counters, VIOLATIONS_QUEUE),
                                           "pending": Messages(box).pending_count(VIOLATIONS_QUEUE)}
        out["recent"] = [
            {"report_id": e.report_id, "outcome": e.outcome, "code": e.code, "message": e.message,
             "attempts": e.attempts, "at": e.finished_at}
            for e in box.ledger(limit=10)
        ]
    finally:
        box.close()
    return out


def _sinks(box: Outbox, described: Any, counters: Dict[str, int], out: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Each sink of the running config (as last saved) with its counts; the defender sink's are the outcomes."""
    pending = Messages(box).sinks_pending()
    rows: List[Dict[str, Any]] = []
    for sink in described if isinstance(described, list) else []:
        if not isinstance(sink, dict) or not isinstance(sink.get("name"), str):
            continue
        row = dict(sink)
        if sink.get("type") == "defender":
            row.update(defender_counts(counters), pending=len(out["pending"]))
        else:
            row.update(sink_counts(counters, sink["name"]), pending=pending.get(sink["name"], 0))
        rows.append(row)
    return rows


def _remote(state_dir: Path) -> Optional[Dict[str, Any]]:
    """The remote config last applied (state_dir/remote-config.json, :mod:`agent.remote.file`); None: none."""
    try:
        return read_raw(state_dir)
    except CorruptState as exc:
        return {"error": str(exc)}


def _remote_lines(remote: Dict[str, Any], on: Optional[bool]) -> List[str]:
    """The remote keys in effect, where each came from, and what was refused."""
    if remote.get("error"):
        return [f"remote config: unreadable, ignored ({remote['error']})"]
    state = ("in effect" if on else "stored but ignored: shadow.remote_config is off" if on is False
             else "stored (whether shadow.remote_config is on is unknown: the config was not read)")
    lines = [f"remote config: shadow version {remote.get('version')}, {state}"]
    sources: Dict[str, Any] = remote["sources"] if isinstance(remote.get("sources"), dict) else {}
    for key, value in _flat(remote.get("applied"), ""):
        source: Dict[str, Any] = sources[key] if isinstance(sources.get(key), dict) else {}
        value_text = json.dumps(value, separators=(",", ":"), default=str)
        lines.append(f"  {key}: {value_text[:100]} (shadow version {source.get('version', '?')}, applied "
                     f"{_when(source.get('applied_at'))})")
    refused: Dict[str, Any] = remote["refused"] if isinstance(remote.get("refused"), dict) else {}
    for key, reason in refused.items():
        lines.append(f"  refused {key}: {reason}")
    return lines


def _flat(value: Any, prefix: str) -> List[Tuple[str, Any]]:
    """``{"report": {"interval": "60s"}}`` -> ``[("report.interval", "60s")]``; lists (behaviors) whole."""
    if not isinstance(value, dict) or (prefix and prefix.count(".") >= 2):
        return [(prefix, value)] if prefix else []
    out: List[Tuple[str, Any]] = []
    for key in sorted(value, key=str):
        out.extend(_flat(value[key], f"{prefix}.{key}" if prefix else str(key)))
    return out


def _violation_lines(violations: Dict[str, Any]) -> List[str]:
    """The behaviors in alarm, with their start, and the transitions counted per behavior."""
    counts = violations.get("counts") or {}
    if not counts:
        return []
    active = violations.get("active") or []
    lines = [f"behaviors:     {len(counts)} evaluated on the device (profile {violations.get('profile', 'local')}), "
             f"{len(active)} in alarm"]
    for item in active:
        since = item.get("since_ms")
        value = json.dumps(item.get("value"), separators=(",", ":"))[:100]
        lines.append(f"  IN ALARM {item.get('behavior')} since {_when(since / 1000 if isinstance(since, int) else None)}"
                     f" ({item.get('metric')} {value}; violation {item.get('violation_id')})")
    events = violations.get("events")
    if isinstance(events, dict) and any(events.values()):
        lines.append(f"  events: delivered {events.get('delivered', 0)}, failed {events.get('failed', 0)}, "
                     f"dropped {events.get('dropped', 0)}, pending {events.get('pending', 0)}")
    for name in sorted(counts):
        c = counts[name]
        lines.append(f"  {name}: in-alarm {c.get('in-alarm', 0)}, alarm-cleared {c.get('alarm-cleared', 0)}, "
                     f"alarm-invalidated {c.get('alarm-invalidated', 0)}")
    return lines


def _when(stamp: Any) -> str:
    if not isinstance(stamp, (int, float)):
        return "never"
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(stamp))


def format_status(status: Dict[str, Any]) -> str:
    lines: List[str] = []
    rid = status.get("last_report_id")
    lines.append(f"last report:   {rid if rid else 'none yet'} at {_when(status.get('last_report_at'))}")
    counts = status["outcomes"]
    lines.append("outcomes:      " + ", ".join(f"{k} {counts.get(k, 0)}" for k in ReportOutcome)
                 + f" (publishes {status.get('published', 0)})")
    if status.get("outbox_corrupt"):
        lines.append(f"outbox:        replaced {status['outbox_corrupt']} corrupt file(s) (moved aside as *.corrupt)")
    pending = status["pending"]
    lines.append(f"pending:       {len(pending)}" + (
        " (" + ", ".join(f"{p['report_id']}: {p['attempts']} attempt(s)" for p in pending[:5])
        + (", ..." if len(pending) > 5 else "") + ")" if pending else ""))
    if status.get("connection"):
        lines.append(f"connection:    {status['connection']} (as of {_when(status.get('updated_at'))})")
    sinks = status.get("sinks") or []
    if sinks and not (len(sinks) == 1 and sinks[0].get("type") == "defender"):  # else the outcomes say it all
        lines.append("sinks:")
        for sink in sinks:
            target = f" {sink['target']}" if sink.get("target") else ""
            lines.append(f"  {sink['name']} ({sink['type']}{target}): delivered {sink.get('delivered', 0)}, "
                         f"failed {sink.get('failed', 0)}, dropped {sink.get('dropped', 0)}, "
                         f"pending {sink.get('pending', 0)}")
    lines.extend(_violation_lines(status.get("violations") or {}))
    if isinstance(status.get("remote"), dict):
        lines.extend(_remote_lines(status["remote"], status.get("remote_config")))
    for rej in status["last_rejections"]:
        lines.append(f"rejected:      {rej['report_id']} {rej['code']}: {rej['message']} ({_when(rej['at'])})")
    collectors = status.get("collectors") or {}
    if collectors:
        lines.append("collectors:")
        for name in sorted(collectors):
            c = collectors[name]
            duration = c.get("last_duration")
            shown = f"{duration * 1000:.1f} ms" if isinstance(duration, (int, float)) else "-"
            error = f", last error: {c['last_error']}" if c.get("last_error") else ""
            lines.append(f"  {name}: ok {c.get('ok', 0)}, failed {c.get('failed', 0)}, "
                         f"no data {c.get('no_data', 0)}, last {shown}{error}")
    return "\n".join(lines)
