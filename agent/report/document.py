"""Decode and check report documents as the service receives them (used by `validate` and the emulator).

``validate_document`` walks a decoded document, detects long or short key
names, and returns every :class:`Violation` with its JSON path; an empty list
means the document is valid.
"""

from __future__ import annotations

import io
import json
from typing import Any, Dict, List, Mapping, Optional, Tuple

import cbor2

from agent.catalog import (
    LONG_TO_SHORT,
    MAX_PAYLOAD_BYTES,
    REPORT_VERSION,
    SHORT_TO_LONG,
    STANDARD_METRICS,
    KeyNames,
    MetricType,
    PayloadFormat,
    StandardKind,
    is_metric_name,
)
from agent.errors import Violation
from agent.report import rules

_ROOT_LONG = ("header", "metrics", "custom_metrics")
_METRIC_NAMES = tuple(STANDARD_METRICS)


class DecodeError(ValueError):
    """The bytes are neither a JSON nor a CBOR report."""


def decode(payload: bytes) -> Tuple[Any, PayloadFormat]:
    """Decode ``payload`` as JSON when it looks like JSON, else CBOR. Returns (document, format)."""
    head = payload.lstrip()[:1]
    if head in (b"{", b"["):
        try:
            return json.loads(payload.decode("utf-8")), PayloadFormat.JSON
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # RecursionError: "[[[[..." nested too deep
            raise DecodeError(f"not valid JSON: {exc}") from None
    stream = io.BytesIO(payload)
    try:
        document = cbor2.CBORDecoder(stream).decode()
    except Exception as exc:  # cbor2 raises several types for garbage
        raise DecodeError(f"neither JSON nor valid CBOR: {exc}") from None
    if stream.tell() != len(payload):  # cbor2.loads ignores what follows the first item; JSON refuses it
        raise DecodeError(f"not one CBOR item: {len(payload) - stream.tell()} byte(s) after the report")
    return document, PayloadFormat.CBOR


def key_style(document: Mapping[str, Any]) -> Optional[KeyNames]:
    """Long or short key names, or ``None`` when mixed or unrecognisable."""
    keys = set(document)
    long_hits = keys & set(_ROOT_LONG)
    short_hits = keys & {LONG_TO_SHORT[k] for k in _ROOT_LONG}
    if long_hits and not short_hits:
        return KeyNames.LONG
    if short_hits and not long_hits:
        return KeyNames.SHORT
    return None


def to_long(document: Mapping[str, Any]) -> Dict[str, Any]:
    """A copy of a short-key document with long keys (custom metric names and value keys untouched)."""
    return _to_long(document, inside_custom=False)  # type: ignore[no-any-return]


def _to_long(value: Any, inside_custom: bool) -> Any:
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            new = key if inside_custom else SHORT_TO_LONG.get(key, key)
            out[new] = _to_long(item, inside_custom=inside_custom or new == "custom_metrics")
        return out
    if isinstance(value, list):
        return [_to_long(item, inside_custom) for item in value]
    return value


class _Walker:
    def __init__(self, style: KeyNames, max_list_items: Optional[int]) -> None:
        self.style = style
        self.max_list_items = max_list_items
        self.violations: List[Violation] = []

    def key(self, long_name: str) -> str:
        return LONG_TO_SHORT[long_name] if self.style is KeyNames.SHORT else long_name

    def add(self, path: str, rule: str, value: Any = None, metric: Optional[str] = None) -> None:
        self.violations.append(Violation(path, rule, value, metric))

    def rule(self, problem: Optional[str], path: str, value: Any, metric: Optional[str] = None) -> None:
        if problem is not None:
            self.add(path, problem, value, metric)

    def mapping(self, value: Any, path: str, allowed: Tuple[str, ...], required: Tuple[str, ...] = ()) -> Dict[str, Any]:
        if not isinstance(value, dict):
            self.add(path, "expected an object", value)
            return {}
        names = {self.key(a): a for a in allowed}
        for key in value:
            if key not in names:
                other = "long" if self.style is KeyNames.SHORT else "short"
                hint = f" (a {other} key name: long and short names must not be mixed)" if _is_other_style(key, self.style) else ""
                self.add(f"{path}.{key}" if path else str(key), f"unknown key{hint}", None)
        for need in required:
            if self.key(need) not in value:
                self.add(f"{path}.{self.key(need)}" if path else self.key(need), "required key is missing")
        return {names[k]: v for k, v in value.items() if k in names}

    def items(self, value: Any, path: str) -> List[Any]:
        if not isinstance(value, list):
            self.add(path, "expected a list", value)
            return []
        if self.max_list_items is not None and len(value) > self.max_list_items:
            self.add(path, f"list has {len(value)} items; the cap is {self.max_list_items}", len(value))
        return value


def _is_other_style(key: Any, style: KeyNames) -> bool:
    return (key in SHORT_TO_LONG) if style is KeyNames.LONG else (key in LONG_TO_SHORT)


def validate_document(
    document: Any, max_list_items: Optional[int] = None, payload_size: Optional[int] = None
) -> List[Violation]:
    """Every rule of the report format that ``document`` breaks. Empty when valid."""
    if not isinstance(document, dict):
        return [Violation("", "a report must be an object", type(document).__name__)]
    style = key_style(document)
    if style is None:
        return [Violation("", "cannot tell long from short key names (missing or mixed root keys)", sorted(map(str, document)))]
    w = _Walker(style, max_list_items)
    if payload_size is not None and payload_size > MAX_PAYLOAD_BYTES:
        w.add("", f"payload is {payload_size} bytes; AWS IoT's limit is {MAX_PAYLOAD_BYTES}", payload_size)
    root = w.mapping(document, "", _ROOT_LONG, required=("header",))
    _header(w, root.get("header"), w.key("header"))
    if "metrics" not in root and "custom_metrics" not in root:
        w.add("", "a report needs metrics or custom_metrics (or both)")
    if "metrics" in root:
        _metrics(w, root["metrics"], w.key("metrics"))
    if "custom_metrics" in root:
        _custom(w, root["custom_metrics"], w.key("custom_metrics"))
    return w.violations


def _header(w: _Walker, value: Any, path: str) -> None:
    if value is None:
        return
    header = w.mapping(value, path, ("report_id", "version"), required=("report_id", "version"))
    if "report_id" in header:
        w.rule(rules.check_report_id(header["report_id"]), f"{path}.{w.key('report_id')}", header["report_id"])
    if "version" in header and header["version"] != REPORT_VERSION:
        w.add(f"{path}.{w.key('version')}", f'must be the string "{REPORT_VERSION}"', header["version"])


def _metrics(w: _Walker, value: Any, path: str) -> None:
    metrics = w.mapping(value, path, _METRIC_NAMES)
    for name, item in metrics.items():
        sub = f"{path}.{w.key(name)}"
        kind = STANDARD_METRICS[name].kind
        if kind is StandardKind.PORTS:
            _ports(w, item, sub)
        elif kind is StandardKind.CONNECTIONS:
            tc = w.mapping(item, sub, ("established_connections",))
            if "established_connections" in tc:
                _connections(w, tc["established_connections"], f"{sub}.{w.key('established_connections')}")
        else:
            stats = w.mapping(item, sub, ("bytes_in", "bytes_out", "packets_in", "packets_out"))
            for field, number in stats.items():
                w.rule(rules.check_count(number), f"{sub}.{w.key(field)}", number)


def _ports(w: _Walker, value: Any, path: str) -> None:
    block = w.mapping(value, path, ("ports", "total"))
    if "total" in block:
        w.rule(rules.check_count(block["total"]), f"{path}.{w.key('total')}", block["total"])
    if "ports" in block:
        lpath = f"{path}.{w.key('ports')}"
        for index, item in enumerate(w.items(block["ports"], lpath)):
            ipath = f"{lpath}[{index}]"
            port = w.mapping(item, ipath, ("port", "interface"), required=("port",))
            if "port" in port:
                w.rule(rules.check_port(port["port"]), f"{ipath}.{w.key('port')}", port["port"])
            if "interface" in port and not isinstance(port["interface"], str):
                w.add(f"{ipath}.{w.key('interface')}", "expected a string", port["interface"])


def _connections(w: _Walker, value: Any, path: str) -> None:
    block = w.mapping(value, path, ("connections", "total"))
    if "total" in block:
        w.rule(rules.check_count(block["total"]), f"{path}.{w.key('total')}", block["total"])
    if "connections" in block:
        lpath = f"{path}.{w.key('connections')}"
        for index, item in enumerate(w.items(block["connections"], lpath)):
            ipath = f"{lpath}[{index}]"
            conn = w.mapping(item, ipath, ("remote_addr", "local_port", "local_interface"), required=("remote_addr",))
            if "remote_addr" in conn:
                w.rule(rules.check_remote_addr(conn["remote_addr"]), f"{ipath}.{w.key('remote_addr')}", conn["remote_addr"])
            if "local_port" in conn:
                w.rule(rules.check_port(conn["local_port"], low=0), f"{ipath}.{w.key('local_port')}", conn["local_port"])
            if "local_interface" in conn and not isinstance(conn["local_interface"], str):
                w.add(f"{ipath}.{w.key('local_interface')}", "expected a string", conn["local_interface"])


def _custom(w: _Walker, value: Any, path: str) -> None:
    if not isinstance(value, dict):
        w.add(path, "expected an object keyed by custom metric name", value)
        return
    for name, wrapped in value.items():
        mpath = f"{path}.{name}"
        if not is_metric_name(name):
            w.add(mpath, "not a valid custom metric name", name, str(name))
            continue
        if not isinstance(wrapped, list) or len(wrapped) != 1 or not isinstance(wrapped[0], dict):
            w.add(mpath, "a custom value must be an array holding exactly one object, e.g. [{\"number\": 1}]", wrapped, name)
            continue
        inner = wrapped[0]
        if len(inner) != 1:
            w.add(f"{mpath}[0]", "the value object must have exactly one key naming the type", inner, name)
            continue
        (vkey, item), = inner.items()
        mtype = MetricType.from_value_key(vkey) if isinstance(vkey, str) else None
        vpath = f"{mpath}[0].{vkey}"
        if mtype is None:
            w.add(vpath, "unknown value key; expected number, number_list, string_list or ip_list", vkey, name)
            continue
        if mtype is not MetricType.NUMBER:
            if not isinstance(item, list):
                w.add(vpath, "expected a list", item, name)
                continue
            w.items(item, vpath)  # the list cap, when one is given
        problem = rules.check_value(item, mtype)
        if problem is not None:
            where = vpath if problem.index is None else f"{vpath}[{problem.index}]"
            w.add(where, problem.rule, problem.item, name)
