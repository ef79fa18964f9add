"""The value rules of Device Defender, one pure function each.

Each returns ``None`` when the value is fine, or a short rule text saying what
is wrong. The encoder (before sending) and the document validator (``validate``)
both use these, so there is one definition of "valid".
"""

from __future__ import annotations

import ipaddress
import math
import re
from decimal import Decimal
from typing import Any, Optional

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


def check_ip(value: Any) -> Optional[str]:
    if not isinstance(value, str):
        return f"expected an IP address string, got {type(value).__name__}"
    try:
        ipaddress.ip_address(value)
    except ValueError:
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


def check_remote_addr(value: Any) -> Optional[str]:
    """``ip:port`` with IPv6 written ``[addr]:port``."""
    if not isinstance(value, str):
        return f"expected a string 'ip:port', got {type(value).__name__}"
    if value.startswith("["):
        host, sep, port = value[1:].partition("]:")
        if not sep:
            return "IPv6 remote_addr must be written [addr]:port"
        try:
            ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            return "is not [IPv6]:port"
    else:
        host, sep, port = value.rpartition(":")
        if not sep:
            return "must be 'ip:port'"
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return "is not IPv4:port (write IPv6 as [addr]:port)"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        return "port part must be 0..65535"
    return None


def format_remote_addr(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
