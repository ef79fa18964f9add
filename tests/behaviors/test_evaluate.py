"""`violates`: Detect's semantics for one behavior over a metric's datapoints, operator by operator.

A behavior states what is normal; a datapoint that does not satisfy it is a violation ("The criteria that
determine if a device is behaving normally", API reference). So `less-than-equals 3` is violated by 4.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Dict, List, Optional, Sequence, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.behaviors.evaluate import Datapoint, judged_value, violates
from agent.behaviors.model import Operator
from tests.behaviors.helpers import behavior

NOW = 1_700_000_000_000

# (metric, operator, the behavior's value, the datapoint's value, violated?)
CASES: List[Tuple[str, str, Dict[str, Any], Dict[str, Any], bool]] = [
    # numeric operators on a device-side count
    ("aws:num-established-tcp-connections", "less-than", {"count": 3}, {"count": 2}, False),
    ("aws:num-established-tcp-connections", "less-than", {"count": 3}, {"count": 3}, True),
    ("aws:num-established-tcp-connections", "less-than", {"count": 3}, {"count": 4}, True),
    ("aws:num-established-tcp-connections", "less-than-equals", {"count": 3}, {"count": 3}, False),
    ("aws:num-established-tcp-connections", "less-than-equals", {"count": 3}, {"count": 4}, True),
    ("aws:num-established-tcp-connections", "greater-than", {"count": 3}, {"count": 4}, False),
    ("aws:num-established-tcp-connections", "greater-than", {"count": 3}, {"count": 3}, True),
    ("aws:num-established-tcp-connections", "greater-than-equals", {"count": 3}, {"count": 3}, False),
    ("aws:num-established-tcp-connections", "greater-than-equals", {"count": 3}, {"count": 2}, True),
    ("aws:num-listening-udp-ports", "less-than-equals", {"count": 5}, {"count": 0}, False),
    ("aws:all-packets-in", "greater-than", {"count": 0}, {"count": 0}, True),
    # numeric operators on a custom number: "greater-than 90" says normal is above 90
    ("cpu_usage", "greater-than", {"number": 90}, {"number": 95}, False),
    ("cpu_usage", "greater-than", {"number": 90}, {"number": 90}, True),
    ("cpu_usage", "greater-than", {"number": 90}, {"number": 40.5}, True),
    ("cpu_usage", "greater-than-equals", {"number": 90}, {"number": 90}, False),
    ("cpu_usage", "less-than", {"number": 90.5}, {"number": 90.5}, True),
    ("cpu_usage", "less-than", {"number": 90.5}, {"number": -3}, False),
    ("cpu_usage", "less-than-equals", {"number": 90.5}, {"number": 90.5}, False),
    ("cpu_usage", "less-than-equals", {"number": 90.5}, {"number": 90.6}, True),
    # port sets: in-port-set lists the allowed ports, not-in-port-set the denied ones
    ("aws:listening-tcp-ports", "in-port-set", {"ports": [22, 8883]}, {"ports": [22]}, False),
    ("aws:listening-tcp-ports", "in-port-set", {"ports": [22, 8883]}, {"ports": [8883, 22]}, False),
    ("aws:listening-tcp-ports", "in-port-set", {"ports": [22, 8883]}, {"ports": []}, False),
    ("aws:listening-tcp-ports", "in-port-set", {"ports": [22, 8883]}, {"ports": [22, 23]}, True),
    ("aws:listening-udp-ports", "in-port-set", {"ports": []}, {"ports": [53]}, True),
    ("aws:listening-tcp-ports", "not-in-port-set", {"ports": [23, 2323]}, {"ports": [22]}, False),
    ("aws:listening-tcp-ports", "not-in-port-set", {"ports": [23, 2323]}, {"ports": [22, 2323]}, True),
    ("aws:listening-udp-ports", "not-in-port-set", {"ports": [23, 2323]}, {"ports": []}, False),
    # CIDR sets: an address is in the set when one of its CIDRs contains it
    ("aws:destination-ip-addresses", "in-cidr-set", {"cidrs": ["10.0.0.0/8", "192.0.2.1"]},
     {"cidrs": ["10.1.2.3", "192.0.2.1"]}, False),
    ("aws:destination-ip-addresses", "in-cidr-set", {"cidrs": ["10.0.0.0/8", "192.0.2.1"]},
     {"cidrs": ["10.1.2.3", "192.0.2.2"]}, True),
    ("aws:destination-ip-addresses", "in-cidr-set", {"cidrs": ["10.0.0.0/8"]}, {"cidrs": ["11.0.0.1"]}, True),
    ("aws:destination-ip-addresses", "in-cidr-set", {"cidrs": ["10.0.0.0/8"]}, {"cidrs": ["::ffff:10.0.0.1"]}, False),
    ("aws:destination-ip-addresses", "in-cidr-set", {"cidrs": ["10.0.0.0/8"]}, {"cidrs": ["2001:db8::1"]}, True),
    ("aws:destination-ip-addresses", "in-cidr-set", {"cidrs": ["2001:db8::/32"]}, {"cidrs": ["2001:db8::1"]}, False),
    ("aws:destination-ip-addresses", "in-cidr-set", {"cidrs": ["2001:db8::/32"]}, {"cidrs": ["10.0.0.1"]}, True),
    ("aws:destination-ip-addresses", "in-cidr-set", {"cidrs": ["10.0.0.0/8"]}, {"cidrs": []}, False),
    ("aws:destination-ip-addresses", "not-in-cidr-set", {"cidrs": ["12.8.0.0/16", "15.102.16.0/24"]},
     {"cidrs": ["12.8.1.1"]}, True),
    ("aws:destination-ip-addresses", "not-in-cidr-set", {"cidrs": ["12.8.0.0/16", "15.102.16.0/24"]},
     {"cidrs": ["12.9.0.1", "15.102.17.1"]}, False),
    ("aws:destination-ip-addresses", "not-in-cidr-set", {"cidrs": ["12.8.0.0/16"]}, {"cidrs": []}, False),
    ("peers", "in-cidr-set", {"cidrs": ["fd00::/8"]}, {"cidrs": ["fd00::1"]}, False),
    ("peers", "in-cidr-set", {"cidrs": ["fd00::/8"]}, {"cidrs": ["fe80::1"]}, True),
    ("peers", "not-in-cidr-set", {"cidrs": ["10.0.0.2"]}, {"cidrs": ["10.0.0.2"]}, True),
    ("peers", "not-in-cidr-set", {"cidrs": ["10.0.0.2"]}, {"cidrs": ["10.0.0.3"]}, False),
    # string sets
    ("services", "in-set", {"strings": ["sshd", "mosquitto"]}, {"strings": ["sshd"]}, False),
    ("services", "in-set", {"strings": ["sshd", "mosquitto"]}, {"strings": ["sshd", "telnetd"]}, True),
    ("services", "in-set", {"strings": ["sshd"]}, {"strings": ["SSHD"]}, True),
    ("services", "not-in-set", {"strings": ["telnetd"]}, {"strings": ["sshd"]}, False),
    ("services", "not-in-set", {"strings": ["telnetd"]}, {"strings": ["sshd", "telnetd"]}, True),
    # number sets
    ("core_load", "in-set", {"numbers": [1, 2.5]}, {"numbers": [1.0, 2.5]}, False),
    ("core_load", "in-set", {"numbers": [1, 2.5]}, {"numbers": [3]}, True),
    ("core_load", "not-in-set", {"numbers": [99]}, {"numbers": [99.0]}, True),
    ("core_load", "not-in-set", {"numbers": [99]}, {"numbers": [1, 2]}, False),
]


@pytest.mark.parametrize("metric, operator, value, datapoint, expected", CASES)
def test_operator(metric: str, operator: str, value: Dict[str, Any], datapoint: Dict[str, Any], expected: bool) -> None:
    assert violates(behavior(metric, operator, value), [Datapoint(NOW, datapoint)], NOW) is expected


def test_the_table_covers_every_operator() -> None:
    assert {case[1] for case in CASES} == {op.value for op in Operator}


def test_no_datapoint_cannot_be_judged() -> None:
    b = behavior("aws:num-established-tcp-connections", "less-than", {"count": 3})
    assert violates(b, [], NOW) is None
    assert violates(b, [Datapoint(NOW + 1, {"count": 9})], NOW) is None  # not yet taken


def test_a_datapoint_of_another_kind_cannot_be_judged() -> None:
    ports = behavior("aws:listening-tcp-ports", "in-port-set", {"ports": [22]})
    assert violates(ports, [Datapoint(NOW, {"count": 3})], NOW) is None
    assert violates(ports, [Datapoint(NOW, {"ports": 22})], NOW) is None
    cpu = behavior("cpu_usage", "greater-than", {"number": 90})
    assert violates(cpu, [Datapoint(NOW, {"number": "95"})], NOW) is None
    assert violates(cpu, [Datapoint(NOW, {"number": True})], NOW) is None


def test_the_newest_datapoint_is_judged() -> None:
    b = behavior("aws:num-established-tcp-connections", "less-than-equals", {"count": 3})
    history = [Datapoint(NOW - 2000, {"count": 9}), Datapoint(NOW, {"count": 2}), Datapoint(NOW - 1000, {"count": 9})]
    assert violates(b, history, NOW) is False
    assert violates(b, history, NOW - 1000) is True


# -- durationSeconds ---------------------------------------------------------------------------


def bytes_out(duration: Optional[int] = 300) -> Any:
    return behavior("aws:all-bytes-out", "less-than-equals", {"count": 4096}, duration=duration)


def points(*pairs: Tuple[int, int]) -> Sequence[Datapoint]:
    return [Datapoint(NOW - ago_ms, {"count": count}) for ago_ms, count in pairs]


@pytest.mark.parametrize(
    "history, total",
    [
        (((0, 4096),), 4096),
        (((0, 4097),), 4097),
        (((0, 1500), (100_000, 2000), (299_999, 1000)), 4500),
        (((0, 1000), (300_000, 3500)), 1000),  # a datapoint exactly one window old is outside it
        (((0, 1000), (300_001, 9999), (900_000, 9999)), 1000),
        (((0, 0), (-1, 9999)), 0),  # a datapoint after `now` is not counted
    ],
)
def test_the_window_sum_of_a_byte_metric(history: Tuple[Tuple[int, int], ...], total: int) -> None:
    b = bytes_out()
    assert judged_value(b, points(*history), NOW) == {"count": total}
    assert violates(b, points(*history), NOW) is (total > 4096)


def test_the_window_follows_the_duration() -> None:
    history = points((0, 3000), (400_000, 3000))
    assert violates(bytes_out(300), history, NOW) is False
    assert violates(bytes_out(600), history, NOW) is True
    assert judged_value(bytes_out(600), history, NOW) == {"count": 6000}


def test_without_a_duration_a_byte_metric_is_one_report_period() -> None:
    history = points((0, 3000), (1000, 3000))
    assert judged_value(bytes_out(None), history, NOW) == {"count": 3000}
    assert violates(bytes_out(None), history, NOW) is False


def test_an_empty_window_cannot_be_judged() -> None:
    assert violates(bytes_out(), points((300_000, 1)), NOW) is None


def test_a_port_count_with_a_duration_is_judged_by_its_newest_datapoint() -> None:
    b = behavior("aws:num-listening-tcp-ports", "less-than-equals", {"count": 5}, duration=300)
    history = points((0, 4), (1000, 4))
    assert judged_value(b, history, NOW) == {"count": 4}
    assert violates(b, history, NOW) is False


# -- properties of the set operators --------------------------------------------------------------

port_lists = st.lists(st.integers(min_value=0, max_value=65535), max_size=8)
small_ports = st.lists(st.integers(min_value=20, max_value=30), max_size=6)  # collide often


@settings(max_examples=150, deadline=None)
@given(allowed=st.one_of(port_lists, small_ports), listening=st.one_of(port_lists, small_ports))
def test_port_sets(allowed: List[int], listening: List[int]) -> None:
    now = [Datapoint(NOW, {"ports": listening})]
    inside = behavior("aws:listening-tcp-ports", "in-port-set", {"ports": allowed})
    outside = behavior("aws:listening-tcp-ports", "not-in-port-set", {"ports": allowed})
    assert violates(inside, now, NOW) is bool(set(listening) - set(allowed))
    assert violates(outside, now, NOW) is bool(set(listening) & set(allowed))


ipv4 = st.ip_addresses(v=4)
networks = st.builds(
    lambda address, prefix: ipaddress.ip_network(f"{address}/{prefix}", strict=False),
    st.ip_addresses(v=4, network="10.0.0.0/8"),
    st.integers(min_value=8, max_value=32),
)


@settings(max_examples=150, deadline=None)
@given(
    cidrs=st.lists(networks, min_size=0, max_size=4),
    addresses=st.lists(st.one_of(ipv4, st.ip_addresses(v=4, network="10.0.0.0/8")), max_size=5),
)
def test_cidr_sets(cidrs: List[ipaddress.IPv4Network], addresses: List[ipaddress.IPv4Address]) -> None:
    now = [Datapoint(NOW, {"cidrs": [str(a) for a in addresses]})]
    text = [str(n) for n in cidrs]
    inside = behavior("aws:destination-ip-addresses", "in-cidr-set", {"cidrs": text})
    outside = behavior("aws:destination-ip-addresses", "not-in-cidr-set", {"cidrs": text})
    contained = [any(a in n for n in cidrs) for a in addresses]
    assert violates(inside, now, NOW) is (not all(contained))
    assert violates(outside, now, NOW) is any(contained)


words = st.lists(st.sampled_from(["sshd", "mosquitto", "telnetd", "nginx", "a_b", "x-1"]), max_size=5)


@settings(max_examples=100, deadline=None)
@given(allowed=words, running=words)
def test_string_sets(allowed: List[str], running: List[str]) -> None:
    now = [Datapoint(NOW, {"strings": running})]
    assert violates(behavior("services", "in-set", {"strings": allowed}), now, NOW) is bool(set(running) - set(allowed))
    assert violates(behavior("services", "not-in-set", {"strings": allowed}), now, NOW) is bool(
        set(running) & set(allowed)
    )


def test_a_null_member_of_the_value_is_no_member() -> None:
    b = behavior("aws:num-established-tcp-connections", "less-than-equals", {"ports": None, "count": 3})
    assert b.criteria.value == {"count": 3}
    assert b.raw["criteria"]["value"] == {"ports": None, "count": 3}  # as configured
    assert violates(b, [Datapoint(NOW, {"count": 4})], NOW) is True
