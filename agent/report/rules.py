"""The value rules of Device Defender, one pure function each: the one definition of "valid".

Each ``check_*`` returns ``None`` when the value is fine, or a short rule text saying
what is wrong. :func:`check_value` checks a custom metric value against its declared
type; the sampler (what a collector returns), the encoder (what goes out) and the
document validator (``validate``, what the service receives) all call it.
:func:`normalize_value` is the one change the agent makes to a value before it is
checked: floats are rounded to 15 significant digits, lists become tuples.

The rules are those of "AWS IoT Device Defender: Custom metrics" and "Device-side
metrics" (developer guide); docs/OPERATIONS.md ("Why it works this way") records where the documents are silent.
"""

from __future__ import annotations

import functools
import math
import re
import socket
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable, List, Optional, Sequence

from agent.catalog import MetricType
from agent.schema import is_number as is_number  # noqa: PLC0414 (re-exported: agent.collectors.parse imports it)

MAX_SIGNIFICANT_DIGITS = 15
_BAD_CHAR = re.compile(r"[^A-Za-z0-9:_\-/.]")


def significant_digits(value: float) -> int:
    """Significant decimal digits of the shortest representation (``repr``) of ``value``."""
    digits = Decimal(repr(value) if isinstance(value, float) else str(value)).normalize().as_tuple().digits
    return max(1, len(digits))


def check_number(value: Any) -> Optional[str]:
    kind = type(value)
    if kind is float:
        # A finite float that survives rounding to 15 digits has at most 15 significant digits in its
        # shortest representation (a property test pins this against significant_digits).
        if math.isfinite(value) and float(f"{value:.{MAX_SIGNIFICANT_DIGITS}g}") == value:
            return None
    elif kind is int and -_INT_LIMIT < value < _INT_LIMIT:
        return None
    if isinstance(value, bool):
        return "a boolean is not a number"
    if not is_number(value):
        return f"expected a number, got {type(value).__name__}"
    if isinstance(value, float) and not math.isfinite(value):
        return "must be a finite number (no NaN or infinity)"
    if value != 0 and significant_digits(value) > MAX_SIGNIFICANT_DIGITS:
        return f"has more than {MAX_SIGNIFICANT_DIGITS} significant digits"
    return None


_INT_LIMIT = 10**MAX_SIGNIFICANT_DIGITS


def round_significant(value: float) -> float:
    """Round a float to 15 significant digits: the precision a double guarantees (DBL_DIG).

    Digits past the 15th in a float are representation noise (0.1 + 0.2), not data;
    integers are never rounded (they are refused instead).
    """
    if not math.isfinite(value) or value == 0:
        return value
    rounded = float(f"{value:.{MAX_SIGNIFICANT_DIGITS}g}")
    if not math.isfinite(rounded):  # rounding up past the largest double: round to one digit less
        rounded = float(f"{value:.{MAX_SIGNIFICANT_DIGITS - 1}g}")
    return rounded


def check_string(value: Any, allow_any: bool = False) -> Optional[str]:
    if not isinstance(value, str):
        return f"expected a string, got {type(value).__name__}"
    if value == "":
        return "must not be empty"
    if allow_any:
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:  # a lone surrogate ("\ud800" from JSON): no encoding can carry it
                return f"is not valid Unicode: {value[exc.start]!r} at index {exc.start} is a lone surrogate"
        return None
    bad = _BAD_CHAR.search(value)
    if bad:
        return (
            f"character {bad.group()!r} (U+{ord(bad.group()):04X}) at index {bad.start()} is outside "
            f"the service's set A-Z a-z 0-9 : _ - / . (set allow_any_characters to send it anyway)"
        )
    return None


_AF_INET = socket.AF_INET
_AF_INET6 = socket.AF_INET6
_pton = socket.inet_pton


def is_ip(text: str) -> bool:
    """A plain IPv4 or IPv6 address (no zone id, no prefix length, no leading zeros).

    ``inet_pton`` agrees with :mod:`ipaddress` on these (a property test pins it)
    and is about 20 times faster, which matters for thousands of connections.
    """
    try:
        _pton(_AF_INET6 if ":" in text else _AF_INET, text)
    except (OSError, ValueError):  # ValueError: embedded NUL or non-ASCII text
        return False
    return True


def check_ip(value: Any) -> Optional[str]:
    if not isinstance(value, str):
        return f"expected an IP address string, got {type(value).__name__}"
    if not is_ip(value):
        return "is not a valid IPv4 or IPv6 address"
    return None


MAX_REPORT_ID = 2**63 - 1  # the service reads reportId as a signed 64-bit integer (a Java long)


def check_report_id(value: Any) -> Optional[str]:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return "must be a positive integer"
    if value > MAX_REPORT_ID:
        return f"must be at most 2^63-1 ({MAX_REPORT_ID})"
    return None


def check_port(value: Any, low: int = 1) -> Optional[str]:
    if isinstance(value, bool) or not isinstance(value, int):
        return f"expected an integer port, got {type(value).__name__}"
    if not low <= value <= 65535:
        return f"port must be in {low}..65535"
    return None


def check_count(value: Any) -> Optional[str]:
    if isinstance(value, bool) or not isinstance(value, int):
        return f"expected a whole number, got {type(value).__name__}"
    if value < 0:
        return "must not be negative"
    return None


_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_PORT = r"(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}|0)"
_IPV4_ADDR_PORT_TEXT = rf"{_OCTET}(?:\.{_OCTET}){{3}}:{_PORT}"
_IPV4_ADDR_PORT = re.compile(_IPV4_ADDR_PORT_TEXT)


_REMOTE_ADDR_LINES = re.compile(rf"(?:(?:{_IPV4_ADDR_PORT_TEXT}|\[[0-9A-Fa-f:.]+\]:{_PORT})\n)*")
_BRACKETED_HOSTS = re.compile(r"^\[([^\]\n]*)\]", re.MULTILINE)
_PLAIN_STRING_LINES = re.compile(r"(?:[A-Za-z0-9:_\-/.]+\n)*")


def _lines(values: Sequence[Any]) -> Optional[str]:
    """Every value on its own line (one C-level join), or None unless all are ``str`` without newlines.

    The batch checks below match the result with one regex: a value holding a newline
    would otherwise pass as two lines, so the line count must equal the value count.
    """
    if not values:
        return ""
    if not set(map(type, values)) <= {str}:
        return None
    text = "\n".join(values) + "\n"
    return text if text.count("\n") == len(values) else None


def _all_remote_addrs_match(values: Sequence[Any]) -> bool:
    """One regex pass over ``IPv4:port`` and ``[IPv6]:port`` lines, then ``inet_pton`` of the IPv6 hosts.

    Stricter than :func:`check_remote_addr` (no leading zeros in ports): False only sends
    the caller to the exact per-item check.
    """
    text = _lines(values)
    if text is None or _REMOTE_ADDR_LINES.fullmatch(text) is None:
        return False
    try:
        for host in _BRACKETED_HOSTS.findall(text):
            _pton(_AF_INET6, host)
    except (OSError, ValueError):
        return False
    return True


def all_valid_remote_addrs(values: Sequence[Any]) -> bool:
    """True when :func:`check_remote_addr` would pass every value; usually in one regex pass."""
    if _all_remote_addrs_match(values):
        return True
    plain: List[Any] = []
    for value in values:
        if type(value) is not str:
            return False
        if value[:1] != "[":
            plain.append(value)
            continue
        end = value.find("]:")
        port = value[end + 2 :]
        if end < 2 or not (port.isascii() and port.isdigit() and len(port) <= 5 and int(port) <= 65535):
            return False
        try:
            _pton(_AF_INET6, value[1:end])
        except (OSError, ValueError):
            return False
    return all(check_remote_addr(value) is None for value in plain)


def all_plain_strings(values: Sequence[Any]) -> bool:
    """True when every value is a ``str`` that :func:`check_string` accepts (non-empty, in the service's
    set): one regex pass. False says only that one of them needs the single check."""
    text = _lines(values)
    return text is not None and _PLAIN_STRING_LINES.fullmatch(text) is not None


def check_remote_addr(value: Any) -> Optional[str]:
    """``ip:port`` with IPv6 written ``[addr]:port``."""
    if type(value) is not str:
        return f"expected a string 'ip:port', got {type(value).__name__}"
    if _IPV4_ADDR_PORT.fullmatch(value) is not None:  # the common case, without building objects
        return None
    if value[:1] == "[":
        end = value.find("]:")
        if end < 0:
            return "IPv6 remote_addr must be written [addr]:port"
        host, port = value[1:end], value[end + 2 :]
        if ":" not in host or not is_ip(host):
            return "is not [IPv6]:port"
    else:
        host, sep, port = value.rpartition(":")
        if not sep:
            return "must be 'ip:port'"
        if ":" in host or not is_ip(host):
            return "is not IPv4:port (write IPv6 as [addr]:port)"
    if not (port.isascii() and port.isdigit() and len(port) <= 5 and int(port) <= 65535):
        return "port part must be 0..65535"
    return None


@dataclass(frozen=True)
class ValueProblem:
    """Why a custom value is not valid: the rule, and the list item it concerns (index None: the value itself)."""

    rule: str
    index: Optional[int] = None
    item: Any = None

    def __str__(self) -> str:
        return self.rule if self.index is None else f"item {self.index} ({self.item!r}): {self.rule}"


def check_value(value: Any, mtype: MetricType, *, allow_any_characters: bool = False) -> Optional[ValueProblem]:
    """Why ``value`` is not a valid value of a custom metric of type ``mtype``; None when it is.

    ``allow_any_characters`` (a string-list metric's opt-in) accepts any non-empty string.
    Lists may be lists or tuples; their length is not checked here (``max_list_items`` is the
    report's cap, applied by the encoder).
    """
    if mtype is MetricType.NUMBER:
        problem = check_number(value)
        return None if problem is None else ValueProblem(problem, None, value)
    if not isinstance(value, (list, tuple)):
        return ValueProblem(f"a {mtype.value} needs a list, got {type(value).__name__}", None, value)
    checker: Callable[[Any], Optional[str]]
    if mtype is MetricType.STRING_LIST:
        if not allow_any_characters and all_plain_strings(value):  # the common case: one regex pass
            return None
        checker = functools.partial(check_string, allow_any=allow_any_characters)
    else:
        checker = check_number if mtype is MetricType.NUMBER_LIST else check_ip
    for index, item in enumerate(value):
        problem = checker(item)
        if problem is not None:
            return ValueProblem(problem, index, item)
    return None


def normalize_value(value: Any, mtype: MetricType) -> Any:
    """``value`` as the agent sends it: floats rounded to 15 significant digits, lists as tuples.

    Anything that is not a finite float is returned as it is (``check_value`` judges it).
    """
    if mtype is MetricType.NUMBER:
        return round_significant(value) if type(value) is float else value
    if not isinstance(value, (list, tuple)):
        return value
    if mtype is MetricType.NUMBER_LIST:
        return tuple(round_significant(v) if type(v) is float else v for v in value)
    return tuple(value)

