"""The Device Shadow service over MQTT: the responder on a real mosquitto with mutual TLS, a device as a gateway is."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from devkit.broker import Broker
from devkit.certs import Pki
from devkit.emulator.responder import Responder, ResponderOptions
from devkit.emulator.shadow import ShadowStore
from tests.emulator.shadow_device import ShadowDevice

pytestmark = [pytest.mark.broker, pytest.mark.timeout(90)]
THING, SHADOW = "gw-7", "defender-agent"


@pytest.fixture
def device(pki: Pki, broker: Broker, shadow_responder: Responder) -> Iterator[ShadowDevice]:
    d = ShadowDevice(pki, broker.port, THING, SHADOW)
    d.start()
    yield d
    d.stop()


def test_get_of_a_missing_shadow_is_rejected_with_404(device: ShadowDevice) -> None:
    device.request("get", {"clientToken": "g-1"})
    assert device.next("get/rejected") == {
        "code": 404, "message": f"No shadow exists with name: '{SHADOW}'",
        "timestamp": device.next("get/rejected")["timestamp"], "clientToken": "g-1"}


def test_report_then_desired_change_reaches_the_device_as_delta(device: ShadowDevice, shadows: ShadowStore) -> None:
    device.request("update", {"state": {"reported": {"interval": 300, "behaviors": ["a"]}}, "clientToken": "r-1"})
    accepted = device.next("update/accepted")
    assert accepted["state"] == {"reported": {"interval": 300, "behaviors": ["a"]}}
    assert accepted["version"] == 1 and accepted["clientToken"] == "r-1"
    assert "previous" not in device.next("update/documents")
    assert device.count("update/delta") == 0  # documents came after where a delta would have been

    # The operator's side: a desired change (here over MQTT too; test_shadow_http does it over HTTP).
    device.request("update", {"state": {"desired": {"interval": 60, "behaviors": ["a"]}}})
    delta = device.next("update/delta")
    assert delta["state"] == {"interval": 60} and delta["version"] == 2
    assert set(delta["metadata"]) == {"interval"}
    documents = device.next("update/documents", 2)
    assert documents["previous"]["version"] == 1 and documents["current"]["version"] == 2
    assert documents["current"]["state"]["desired"] == {"interval": 60, "behaviors": ["a"]}

    device.request("get", {"clientToken": "g-2"})
    got = device.next("get/accepted")
    assert got["state"]["delta"] == {"interval": 60} and got["clientToken"] == "g-2" and got["version"] == 2

    # The device applies it and reports: no delta left, so none is published.
    device.request("update", {"state": {"reported": {"interval": 60}}})
    assert device.next("update/accepted", 3)["version"] == 3
    device.next("update/documents", 3)
    assert device.count("update/delta") == 1
    assert shadows.get(THING, SHADOW)["state"]["reported"] == {"interval": 60, "behaviors": ["a"]}


def test_rejections_arrive_on_update_rejected(device: ShadowDevice) -> None:
    device.request("update", raw=b"{not json")
    assert device.next("update/rejected")["code"] == 400
    device.request("update", {"state": {"reported": {"a": 1}}})
    device.next("update/accepted")
    device.request("update", {"state": {"reported": {"a": 2}}, "version": 7, "clientToken": "v"})
    conflict = device.next("update/rejected", 2)
    assert (conflict["code"], conflict["message"], conflict["clientToken"]) == (409, "Version conflict", "v")
    device.request("update", {"state": {"reported": {"a": "x" * 9000}}})
    assert device.next("update/rejected", 3)["code"] == 413
    device.request("update", raw=b'{"state": {"reported": {"a": "\xff"}}}')
    assert device.next("update/rejected", 4)["code"] == 415
    assert device.count("update/accepted") == 1


def test_delete_then_get_is_rejected(device: ShadowDevice) -> None:
    device.request("update", {"state": {"reported": {"a": 1}}})
    device.next("update/accepted")
    device.request("delete", {"clientToken": "d"})
    deleted = device.next("delete/accepted")
    assert deleted["version"] == 1 and deleted["clientToken"] == "d"
    device.request("delete")
    assert device.next("delete/rejected")["code"] == 404
    device.request("get")
    assert device.next("get/rejected")["code"] == 404


def test_the_shadow_topics_work_under_a_per_thing_acl(pki: Pki, tmp_path: Path) -> None:
    """A broker ACL shaped like the AWS device policy (the device may use its own shadow's topics only):
    the device still gets its answers, and cannot touch another thing's shadow."""
    acl = (
        "user defender-emulator\ntopic readwrite $aws/#\n\n"
        f"user {THING}\ntopic write $aws/things/{THING}/shadow/name/{SHADOW}/update\n"
        f"topic write $aws/things/{THING}/shadow/name/{SHADOW}/get\n"
        f"topic read $aws/things/{THING}/shadow/name/{SHADOW}/#\n"
    )
    broker = Broker(tmp_path / "acl-broker", pki, acl=acl)
    broker.start()
    store = ShadowStore()
    pair = pki.client("defender-emulator")
    responder = Responder(ResponderOptions("127.0.0.1", broker.port, str(pair.cert), str(pair.key), str(pki.ca),
                                           shadows=store))
    responder.start()
    device = ShadowDevice(pki, broker.port, THING, SHADOW)
    try:
        device.start()
        device.request("update", {"state": {"reported": {"a": 1}}})
        assert device.next("update/accepted")["version"] == 1
        device.prefix = f"$aws/things/other-gw/shadow/name/{SHADOW}"  # denied by the ACL: dropped by the broker
        device.request("update", {"state": {"reported": {"a": 2}}})
        device.prefix = f"$aws/things/{THING}/shadow/name/{SHADOW}"
        device.request("get")
        assert device.next("get/accepted")["state"]["reported"] == {"a": 1}
        assert store.names("other-gw") == []  # the get's answer came after where the other update's would be
    finally:
        device.stop()
        responder.stop()
        broker.stop()
