"""Text or JSON -> a typed custom metric value (what the ``exec`` and ``file`` collectors read).

Pure: no I/O. Parsing only turns text into a value of the declared type; whether the
value is one the service accepts is :func:`agent.report.rules.check_value`'s call (the
sampler makes it).

Text rules (``format: lines``): one value per line; surrounding blanks are
stripped; empty lines and lines starting with ``#`` are ignored. A ``number``
needs exactly one value line. JSON rules (``format: json``): a ``number`` is a
JSON number; a list type is a JSON array of numbers or strings. ``format: auto``
reads JSON when the text starts with ``[``, ``{`` or ``"``, else lines.
IP addresses are checked and written in canonical form (``fd00::1``).
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from typing import Any, List, Optional, Tuple

from agent.catalog import MetricType
from agent.report.model import CustomValue, Number
from agent.report.rules import is_ip, is_number

FORMATS = ("auto", "lines", "json")

_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


class ValueParseError(ValueError):
    """The text does not hold a value of the declared type; the message says where and why."""


def parse_number(text: str) -> Number:
    """``"42"`` -> 42, ``"-1.5e3"`` -> -1500.0; refuses nan, inf, booleans, hex and the empty string."""
    token = text.strip()
    if _INT.fullmatch(token):
        return int(token)
    if _FLOAT.fullmatch(token):
        value = float(token)
        if math.isfinite(value):
            return value
        raise ValueParseError(f"{_show(token)} is too large to be a finite number")
    raise ValueParseError(f"{_show(token)} is not a number")


def parse_ip(text: str) -> str:
    """An address in canonical form (``fd00::1``); refuses zone ids (``fe80::1%eth0``), which the service does not take."""
    token = text.strip()
    try:
        canonical = str(ipaddress.ip_address(token))
    except ValueError:
        raise ValueParseError(f"{_show(token)} is not an IPv4 or IPv6 address") from None
    if not is_ip(canonical):
        raise ValueParseError(f"{_show(token)} has a zone id (%...), which Device Defender does not accept")
    return canonical


def parse_value(
    text: str, mtype: MetricType, fmt: str = "auto", scale: Optional[float] = None
) -> CustomValue:
    """Parse ``text`` as a value of ``mtype``. Raises :class:`ValueParseError`.

    ``scale`` multiplies numbers (e.g. ``0.001`` for a sysfs millidegree sensor).
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}")
    stripped = text.strip()
    use_json = fmt == "json" or (fmt == "auto" and stripped[:1] in ("[", "{", '"'))
    value = _from_json(stripped, mtype) if use_json else _from_lines(text, mtype)
    if scale is not None:
        value = _scaled(value, scale)
    return value


def _from_lines(text: str, mtype: MetricType) -> CustomValue:
    lines: List[Tuple[int, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line and not line.startswith("#"):
            lines.append((number, line))
    if mtype is MetricType.NUMBER:
        if len(lines) != 1:
            raise ValueParseError(f"expected exactly one number, found {len(lines)} value line(s)")
        first: Number = _at(lines[0], parse_number)
        return first
    if mtype is MetricType.NUMBER_LIST:
        return tuple(_at(item, parse_number) for item in lines)
    if mtype is MetricType.IP_ADDRESS_LIST:
        return tuple(_at(item, parse_ip) for item in lines)
    return tuple(line for _, line in lines)


def _at(item: Tuple[int, str], parse: Any) -> Any:
    number, line = item
    try:
        return parse(line)
    except ValueParseError as exc:
        raise ValueParseError(f"line {number}: {exc}") from None


def _from_json(text: str, mtype: MetricType) -> CustomValue:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValueParseError(f"not valid JSON: {exc}") from None
    if mtype is MetricType.NUMBER:
        if not is_number(data):
            raise ValueParseError(f"expected a JSON number, got {_json_kind(data)}")
        return _finite(data)
    if not isinstance(data, list):
        raise ValueParseError(f"expected a JSON array, got {_json_kind(data)}")
    out: List[Any] = []
    for index, item in enumerate(data):
        if mtype is MetricType.NUMBER_LIST:
            if not is_number(item):
                raise ValueParseError(f"item {index}: expected a number, got {_json_kind(item)}")
            out.append(_finite(item))
        elif not isinstance(item, str):
            raise ValueParseError(f"item {index}: expected a string, got {_json_kind(item)}")
        elif mtype is MetricType.IP_ADDRESS_LIST:
            try:
                out.append(parse_ip(item))
            except ValueParseError as exc:
                raise ValueParseError(f"item {index}: {exc}") from None
        else:
            out.append(item)
    return tuple(out)


def _finite(value: Number) -> Number:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueParseError("numbers must be finite")
    return value


def _scaled(value: CustomValue, scale: float) -> CustomValue:
    if isinstance(value, tuple):
        return tuple(_scale_one(v, scale) for v in value)
    return _scale_one(value, scale)


def _scale_one(value: Any, scale: float) -> Number:
    if not is_number(value):
        raise ValueParseError("scale applies to numbers only")
    result = value * scale
    return result if isinstance(result, int) else round(result, 9)


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return f"the string {_show(value)}"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "a number"


def _show(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:37] + "...")
