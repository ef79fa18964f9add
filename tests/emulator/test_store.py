"""The emulator's store keeps values the way the service does ("Custom metrics" and ListMetricValues in the AWS documents)."""

from __future__ import annotations

import threading

from devkit.emulator.store import Store

T0 = 1_700_000_000_000


def values(store: Store, metric: str, thing: str = "gw"):  # type: ignore[no-untyped-def]
    return [d.value for d in store.metric_values(thing, metric, 0, 2**62)]


def defined() -> Store:
    store = Store()
    for name, mtype in [
        ("n", "number"),
        ("nl", "number-list"),
        ("sl", "string-list"),
        ("ip", "ip-address-list"),
    ]:
        store.create_metric(name, mtype, None, (), "t")
    return store


def test_custom_values_map_to_the_cloud_value_members() -> None:
    store = defined()
    store.record_report(
        "gw",
        {
            "header": {"report_id": 1, "version": "1.0"},
            "custom_metrics": {
                "n": [{"number": 37.5}],
                "nl": [{"number_list": [1, 2.5]}],
                "sl": [{"string_list": ["sshd", "mosquitto"]}],
                "ip": [{"ip_list": ["10.0.0.2", "fd00::1"]}],
            },
        },
        T0,
    )
    assert values(store, "n") == [{"number": 37.5}]
    assert values(store, "nl") == [{"numbers": [1.0, 2.5]}]
    assert values(store, "sl") == [{"strings": ["sshd", "mosquitto"]}]
    assert values(store, "ip") == [{"cidrs": ["10.0.0.2", "fd00::1"]}]
    assert store.dropped == 0


def test_undefined_mistyped_and_invalid_values_are_dropped_silently() -> None:
    store = defined()
    store.record_report(
        "gw",
        {
            "header": {"report_id": 1, "version": "1.0"},
            "custom_metrics": {
                "undeclared": [{"number": 1}],
                "n": [{"number_list": [1]}],  # defined as number
                "sl": [{"string_list": ["has space"]}],  # outside the character set
                "ip": [{"ip_list": ["10.0.0.300"]}],
                "nl": {"number_list": [1]},  # not wrapped
            },
        },
        T0,
    )
    assert [values(store, m) for m in ("undeclared", "n", "sl", "ip", "nl")] == [[], [], [], [], []]
    assert store.dropped == 5


def test_short_key_names_and_standard_metrics() -> None:
    store = Store()
    store.record_report(
        "gw",
        {
            "hed": {"rid": 1, "v": "1.0"},
            "met": {
                "ns": {"bi": 10, "bo": 20, "pi": 1, "po": 2},
                "tp": {"pts": [{"pt": 22}, {"pt": 443, "if": "eth0"}], "t": 3},
                "tc": {"ec": {"cs": [{"rad": "10.0.0.9:443"}, {"rad": "[fd00::2]:22"}], "t": 2}},
            },
        },
        T0,
    )
    assert values(store, "aws:all-bytes-out") == [{"count": 20}]
    assert values(store, "aws:all-packets-in") == [{"count": 1}]
    assert values(store, "aws:listening-tcp-ports") == [{"ports": [22, 443]}]
    assert values(store, "aws:num-listening-tcp-ports") == [{"count": 3}]
    assert values(store, "aws:num-established-tcp-connections") == [{"count": 2}]
    assert values(store, "aws:destination-ip-addresses") == [{"cidrs": ["10.0.0.9", "fd00::2"]}]


def test_time_range_is_start_inclusive_end_exclusive() -> None:
    store = defined()
    for offset in range(3):
        store.record_value("gw", "n", T0 + offset, {"number": float(offset)})
    assert [d.value["number"] for d in store.metric_values("gw", "n", T0 + 1, T0 + 2)] == [1.0]


def test_concurrent_reports_are_all_kept() -> None:
    store = defined()

    def send(base: int) -> None:
        for i in range(200):
            store.record_report(
                "gw",
                {
                    "header": {"report_id": base + i, "version": "1.0"},
                    "custom_metrics": {"n": [{"number": i}]},
                },
                T0 + base + i,
            )

    threads = [threading.Thread(target=send, args=(k * 1000,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(values(store, "n")) == 800


def test_deleting_a_metric_deletes_its_values() -> None:
    store = defined()
    store.record_value("gw", "n", T0, {"number": 1.0})
    store.delete_metric("n")
    store.delete_metric("never-existed")  # no-op, as DeleteCustomMetric models no ResourceNotFound
    assert values(store, "n") == [] and "n" not in store.metric_names()
