"""The shadow data plane (iot-data) as boto3 and the AWS CLI speak it, and an HTTP update reaching a device over MQTT."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from devkit.broker import Broker
from devkit.certs import Pki
from devkit.emulator.dataplane import DataPlaneServer
from devkit.emulator.shadow import ShadowStore
from tests.emulator.conftest import AWS_CLI, iot_data_client, run_aws
from tests.emulator.shadow_device import ShadowDevice

THING, SHADOW = "gw-http", "defender-agent"


def update(iot_data: Any, document: Any, shadow: str = SHADOW) -> Any:
    response = iot_data.update_thing_shadow(thingName=THING, shadowName=shadow, payload=json.dumps(document).encode())
    return json.loads(response["payload"].read())


def test_update_get_delete_round_trip(iot_data: Any) -> None:
    accepted = update(iot_data, {"state": {"desired": {"interval": 60}}, "clientToken": "op-1"})
    assert accepted["state"] == {"desired": {"interval": 60}} and accepted["version"] == 1
    assert accepted["clientToken"] == "op-1"
    got = json.loads(iot_data.get_thing_shadow(thingName=THING, shadowName=SHADOW)["payload"].read())
    assert got["state"] == {"desired": {"interval": 60}, "delta": {"interval": 60}}
    deleted = json.loads(iot_data.delete_thing_shadow(thingName=THING, shadowName=SHADOW)["payload"].read())
    assert deleted["version"] == 1
    with pytest.raises(iot_data.exceptions.ResourceNotFoundException) as caught:
        iot_data.get_thing_shadow(thingName=THING, shadowName=SHADOW)
    assert caught.value.response["Error"]["Message"] == f"No shadow exists with name: '{SHADOW}'"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_classic_shadow_without_a_name(iot_data: Any, shadows: ShadowStore) -> None:
    iot_data.update_thing_shadow(thingName=THING, payload=b'{"state": {"reported": {"classic": true}}}')
    assert shadows.get(THING, None)["state"]["reported"] == {"classic": True}
    assert shadows.names(THING) == []


def test_errors_raise_the_modelled_exceptions(iot_data: Any) -> None:
    update(iot_data, {"state": {"reported": {"a": 1}}})
    cases = [
        (b'{"state": {"reported": {"a": 2}}, "version": 5}', "ConflictException", 409, "Version conflict"),
        (json.dumps({"state": {"reported": {"a": "x" * 9000}}}).encode(), "RequestEntityTooLargeException", 413,
         "The payload exceeds the maximum size allowed"),
        (b"{not json", "InvalidRequestException", 400, "Invalid JSON"),
        (b'{"state": {"reported": "on"}}', "InvalidRequestException", 400, "Reported node must be an object"),
        (b'{"state": {"reported": {"a": "\xff"}}}', "UnsupportedDocumentEncodingException", 415,
         "Unsupported documented encoding; supported encoding is UTF-8"),
    ]
    for payload, exception, status, message in cases:
        with pytest.raises(getattr(iot_data.exceptions, exception)) as caught:
            iot_data.update_thing_shadow(thingName=THING, shadowName=SHADOW, payload=payload)
        error = caught.value.response
        assert (error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"]) == (exception, status)
        assert error["Error"]["Message"] == message
    got = json.loads(iot_data.get_thing_shadow(thingName=THING, shadowName=SHADOW)["payload"].read())
    assert got["version"] == 1 and got["state"]["reported"] == {"a": 1}  # none of them changed anything


def test_the_model_checks_names_the_client_does_not(iot_data: Any) -> None:
    with pytest.raises(iot_data.exceptions.InvalidRequestException) as caught:
        iot_data.get_thing_shadow(thingName=THING, shadowName="x" * 65)
    assert "Member must have length less than or equal to 64" in caught.value.response["Error"]["Message"]


def test_error_wire_format(data_plane: DataPlaneServer) -> None:
    request = urllib.request.Request(f"{data_plane.url}/things/{THING}/shadow?name={SHADOW}", method="GET")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=5)
    assert caught.value.code == 404
    assert caught.value.headers["x-amzn-ErrorType"] == "ResourceNotFoundException"
    body = json.loads(caught.value.read())
    assert body["code"] == 404 and body["message"] == f"No shadow exists with name: '{SHADOW}'"
    request = urllib.request.Request(f"{data_plane.url}/things/{THING}/shadow", method="PUT", data=b"{}")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=5)
    assert (caught.value.code, caught.value.headers["x-amzn-ErrorType"]) == (405, "MethodNotAllowedException")


def test_list_named_shadows_pages(iot_data: Any) -> None:
    for name in ("c", "a", "b"):
        update(iot_data, {"state": {"reported": {"n": name}}}, shadow=name)
    iot_data.update_thing_shadow(thingName=THING, payload=b'{"state": {"reported": {}}}')  # classic: not listed
    first = iot_data.list_named_shadows_for_thing(thingName=THING)
    assert first["results"] == ["a", "b"] and "nextToken" in first and isinstance(first["timestamp"], int)
    second = iot_data.list_named_shadows_for_thing(thingName=THING, nextToken=first["nextToken"])
    assert second["results"] == ["c"] and "nextToken" not in second
    assert iot_data.list_named_shadows_for_thing(thingName="nobody")["results"] == []


def test_aws_cli_update_and_get(data_plane: DataPlaneServer, tmp_path: Path) -> None:
    assert AWS_CLI.exists(), "the dev extra installs awscli: .venv/bin/pip install -e '.[dev]'"
    out = tmp_path / "out.json"
    payload = json.dumps({"state": {"desired": {"behaviors": {"NoDebugPort": {"ports": [2323]}}}}})
    done = run_aws(data_plane.url, tmp_path, "update-thing-shadow", "--thing-name", THING, "--shadow-name", SHADOW,
                   "--payload", payload, str(out))
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text())["state"]["desired"]["behaviors"]["NoDebugPort"] == {"ports": [2323]}
    done = run_aws(data_plane.url, tmp_path, "get-thing-shadow", "--thing-name", THING, "--shadow-name", SHADOW,
                   str(out))
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text())["state"]["delta"] == {"behaviors": {"NoDebugPort": {"ports": [2323]}}}
    done = run_aws(data_plane.url, tmp_path, "update-thing-shadow", "--thing-name", THING, "--shadow-name", SHADOW,
                   "--payload", payload.replace("{", "[", 1), str(out))
    assert done.returncode == 255 and "(InvalidRequestException)" in done.stderr and "Invalid JSON" in done.stderr
    done = run_aws(data_plane.url, tmp_path, "get-thing-shadow", "--thing-name", THING, "--shadow-name", "nope",
                   str(out))
    assert done.returncode == 255 and "(ResourceNotFoundException)" in done.stderr


@pytest.mark.broker
@pytest.mark.timeout(90)
def test_an_http_update_reaches_the_device_as_delta_and_documents(pki: Pki, broker: Broker,
                                                                  linked_data_plane: DataPlaneServer,
                                                                  tmp_path: Path) -> None:
    device = ShadowDevice(pki, broker.port, THING, SHADOW)
    device.start()
    try:
        device.request("update", {"state": {"reported": {"interval": 300}}})
        device.next("update/accepted")
        client = iot_data_client(linked_data_plane.url)
        client.update_thing_shadow(thingName=THING, shadowName=SHADOW,
                                   payload=b'{"state": {"desired": {"interval": 60}}, "clientToken": "op"}')
        delta = device.next("update/delta")
        assert delta["state"] == {"interval": 60} and delta["version"] == 2 and delta["clientToken"] == "op"
        documents = device.next("update/documents", 2)
        assert documents["previous"]["state"] == {"reported": {"interval": 300}}
        assert documents["current"]["state"]["desired"] == {"interval": 60}
        with pytest.raises(client.exceptions.ConflictException):
            client.update_thing_shadow(thingName=THING, shadowName=SHADOW,
                                       payload=b'{"state": {"desired": {"interval": 1}}, "version": 1}')
        device.request("get")
        device.next("get/accepted")
        # Answers of HTTP requests are not published: no accepted or rejected reached the device for them.
        assert device.count("update/accepted") == 1 and device.count("update/rejected") == 0
    finally:
        device.stop()
