"""The value rules of Device Defender, one pure function each.

Each returns ``None`` when the value is fine, or a short rule text saying what
is wrong. The encoder (before sending) and the document validator (``validate``)
both use these, so there is one definition of "valid".
"""

from __future__ import annotations

import math
import re
import socket
from decimal import Decimal
from typing import Any, List, Optional, Sequence

MAX_SIGNIFICANT_DIGITS = 15
_ALLOWED_STRING = re.compile(r"[A-Za-z0-9:_\-/.]+")
_BAD_CHAR = re.compile(r"[^A-Za-z0-9:_\-/.]")


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def significant_digits(value: float) -> int:
    """Significant decimal digits of the shortest representation (``repr``) of ``value``."""
    digits = Decimal(repr(value) if isinstance(value, float) else str(value)).normalize().as_tuple().digits
    return max(1, len(digits))


def check_number(value: Any) -> Optional[str]:
    if isinstance(value, bool):
        return "a boolean is not a number"
    if not is_number(value):
        return f"expected a number, got {type(value).__name__}"
    if isinstance(value, float) and not math.isfinite(value):
        return "must be a finite number (no NaN or infinity)"
    if value != 0 and significant_digits(value) > MAX_SIGNIFICANT_DIGITS:
        return f"has more than {MAX_SIGNIFICANT_DIGITS} significant digits"
    return None


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
        return None
    bad = _BAD_CHAR.search(value)
    if bad:
        return (
            f"character {bad.group()!r} (U+{ord(bad.group()):04X}) at index {bad.start()} is outside "
            f"the service's set A-Z a-z 0-9 : _ - / . (set allow_any_characters to send it anyway)"
        )
    return None


def string_is_plain(value: str) -> bool:
    return bool(_ALLOWED_STRING.fullmatch(value))


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
_IPV4_ADDR_PORT_LINES = re.compile(rf"(?:{_IPV4_ADDR_PORT_TEXT}\n)*")


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


def all_plain_ipv4_remote_addrs(values: Sequence[Any]) -> bool:
    """True when every value is an ``IPv4:port`` string: one regex pass in C for the whole list.

    The encoder's fast path for the common case; anything else (IPv6, a bad
    value) falls back to :func:`check_remote_addr` per item for a precise message.
    """
    text = _lines(values)
    return text is not None and _IPV4_ADDR_PORT_LINES.fullmatch(text) is not None


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
    """True when every value passes :func:`string_is_plain` (a non-empty ``str``): one regex pass."""
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


def format_remote_addr(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
