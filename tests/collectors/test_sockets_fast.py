"""The inet_pton/inet_ntop address paths agree with the ipaddress reference they replace."""

from __future__ import annotations

import ipaddress
from typing import Tuple

from hypothesis import example, given, settings
from hypothesis import strategies as st

from agent.collectors.standard import sockets

HEXTET = st.one_of(st.just(0), st.just(0xFFFF), st.integers(0, 0xFF), st.integers(0, 0xFFFF))


def _v6(hextets: Tuple[int, ...]) -> ipaddress.IPv6Address:
    return ipaddress.IPv6Address(int.from_bytes(b"".join(h.to_bytes(2, "big") for h in hextets), "big"))


V6 = st.tuples(*[HEXTET] * 8).map(_v6)
V4 = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)


def _spellings(addr: ipaddress._BaseAddress) -> st.SearchStrategy[str]:
    text = str(addr)
    out = [text, addr.exploded, text.upper()]
    if isinstance(addr, ipaddress.IPv4Address):
        out += [f"::ffff:{text}", f"::{text}", f"{text}%eth0"]
    else:
        out += [f"{text}%eth0", f"{text}%1"]
    return st.sampled_from(out)


ADDRESS_TEXT = st.one_of(V4, V6).flatmap(_spellings)
NOISE = st.text(alphabet="0123456789abcdefABCDEF:.%x ", max_size=45)


def _sort_key_reference(ip: str) -> Tuple[int, int]:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return (9, 0)
    return (addr.version, int(addr))


def _loopback_reference(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


@settings(max_examples=3000, deadline=None)
@given(st.one_of(ADDRESS_TEXT, NOISE))
@example("::1.2.3.4")
@example("::ffff:127.0.0.1")
@example("1:0:1:1:1:1:1:1")
@example("1:0:0:1:0:0:1:1")
@example("0:0:0:0:0:0:0:0")
@example("01.2.3.4")
@example("1.2.3.4\x00")
@example("\u0661.2.3.4")  # a non-ASCII digit
def test_fast_address_paths_agree_with_ipaddress(text: str) -> None:
    bare = text.split("%", 1)[0]
    assert sockets.normalize_ip(text) == sockets._normalize_slow(bare)
    assert sockets.ip_sort_key(text) == _sort_key_reference(text)
    assert sockets.is_loopback(text) is _loopback_reference(text)
    normalized = sockets.normalize_ip(text)
    assert sockets.ip_sort_key(normalized) == _sort_key_reference(normalized)
    assert sockets.is_loopback(normalized) is _loopback_reference(normalized)
