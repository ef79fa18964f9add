"""The local control plane: modelled errors, model-driven validation, pagination, test hooks."""

from __future__ import annotations

import pytest

from devkit.emulator.apimodel import python_pattern
from devkit.emulator.controlplane import ControlPlaneServer
from devkit.emulator.store import Store
from tests.emulator.conftest import raw


def test_create_describe_update_delete_round_trip(iot) -> None:
    created = iot.create_custom_metric(
        metricName="cpu_usage",
        metricType="number",
        displayName="CPU",
        tags=[{"Key": "team", "Value": "edge"}],
        clientRequestToken="tok-1",
    )
    assert created["metricArn"].endswith(":custommetric/cpu_usage")
    described = iot.describe_custom_metric(metricName="cpu_usage")
    assert (described["metricType"], described["displayName"]) == ("number", "CPU")
    assert described["creationDate"].tzinfo is not None  # epoch seconds parsed by botocore
    updated = iot.update_custom_metric(metricName="cpu_usage", displayName="CPU %")
    assert updated["displayName"] == "CPU %" and updated["lastModifiedDate"] >= updated["creationDate"]
    iot.delete_custom_metric(metricName="cpu_usage")
    with pytest.raises(iot.exceptions.ResourceNotFoundException, match="cpu_usage does not exist"):
        iot.describe_custom_metric(metricName="cpu_usage")


def test_errors_are_the_modelled_exception_classes(server, iot) -> None:
    iot.create_custom_metric(metricName="m", metricType="number", clientRequestToken="a")
    with pytest.raises(iot.exceptions.ResourceAlreadyExistsException) as info:
        iot.create_custom_metric(metricName="m", metricType="number", clientRequestToken="b")
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    assert info.value.response["resourceId"] == "m"
    with pytest.raises(iot.exceptions.ResourceNotFoundException):
        iot.update_custom_metric(metricName="other", displayName="x")
    status, headers, body = raw(server, "GET", "/custom-metric/other")
    assert status == 404 and headers["x-amzn-ErrorType"] == "ResourceNotFoundException" and body["message"]


@pytest.mark.parametrize(
    ("kwargs", "constraint"),
    [
        ({"metricName": "has space", "metricType": "number"}, "regular expression pattern: [a-zA-Z0-9:_-]+"),
        ({"metricName": "x" * 129, "metricType": "number"}, "length less than or equal to 128"),
        ({"metricName": "m", "metricType": "numbers"}, "enum value set: [string-list, ip-address-list"),
        ({"metricName": "m", "metricType": "number", "displayName": "tab\there"}, r"[\p{Graph}\x20]*"),
        ({"metricName": "m", "metricType": "number", "displayName": "d" * 129}, "less than or equal to 128"),
        (
            {"metricName": "m", "metricType": "number", "tags": [{"Key": "a" * 129, "Value": ""}]},
            "tags.1.member.Key",
        ),
        ({"metricName": "aws:mine", "metricType": "number"}, "reserved prefix aws:"),
    ],
)
def test_validation_follows_the_service_model(iot, kwargs, constraint) -> None:
    with pytest.raises(iot.exceptions.InvalidRequestException) as info:
        iot.create_custom_metric(clientRequestToken="t", **kwargs)
    assert constraint in str(info.value)


def test_validation_of_what_botocore_does_not_check(server, iot) -> None:
    # botocore checks required members and minimums client-side; maxima and patterns only the server.
    with pytest.raises(iot.exceptions.InvalidRequestException, match="less than or equal to 250"):
        iot.list_custom_metrics(maxResults=251)
    with pytest.raises(iot.exceptions.InvalidRequestException, match="clientRequestToken"):
        iot.create_custom_metric(metricName="m", metricType="number", clientRequestToken="not valid!")
    status, headers, body = raw(server, "POST", "/custom-metric/m", {"clientRequestToken": "t"})
    assert status == 400 and headers["x-amzn-ErrorType"] == "InvalidRequestException"
    assert (
        "Value null at 'metricType' failed to satisfy constraint: Member must not be null" in body["message"]
    )
    status, _, body = raw(server, "GET", "/metric-values?thingName=t&metricName=m&startTime=bad&endTime=1")
    assert status == 400 and "startTime" in body["message"]


def test_lists_page_with_a_small_page_size(server, iot) -> None:
    for index in range(5):
        iot.create_custom_metric(metricName=f"m{index}", metricType="number", clientRequestToken="t")
    pages = list(iot.get_paginator("list_custom_metrics").paginate())
    assert [p["metricNames"] for p in pages] == [["m0", "m1"], ["m2", "m3"], ["m4"]]
    assert "nextToken" not in pages[-1]
    with pytest.raises(iot.exceptions.InvalidRequestException, match="nextToken"):
        iot.list_custom_metrics(nextToken="garbage")


def test_delete_is_refused_while_a_security_profile_uses_the_metric(server, iot) -> None:
    iot.create_custom_metric(metricName="guarded", metricType="number", clientRequestToken="t")
    server.store.put_security_profile("fleet", ["guarded"])
    server.store.put_security_profile("other", ["else"])
    found = iot.list_security_profiles(metricName="guarded")["securityProfileIdentifiers"]
    assert [p["name"] for p in found] == ["fleet"]
    with pytest.raises(iot.exceptions.InvalidRequestException, match="used by security profile"):
        iot.delete_custom_metric(metricName="guarded")
    server.store.delete_security_profile("fleet")
    iot.delete_custom_metric(metricName="guarded")
    assert iot.list_custom_metrics()["metricNames"] == []


def test_injected_throttling(server, iot) -> None:
    status, _, _ = raw(server, "POST", "/_emulator/inject?code=ThrottlingException&count=1")
    assert status == 200
    # botocore's default (legacy) retry mode retries ThrottlingException by itself...
    assert iot.list_custom_metrics()["ResponseMetadata"]["RetryAttempts"] == 1
    assert server.calls("ListCustomMetrics") == [("ListCustomMetrics", 400), ("ListCustomMetrics", 200)]
    # ...and gives up after 5 attempts in all.
    server.inject_errors(5, operation="ListCustomMetrics")
    with pytest.raises(iot.exceptions.ThrottlingException, match="Rate exceeded"):
        iot.list_custom_metrics()


def test_list_metric_values_maps_types_and_pages(server, iot) -> None:
    import datetime as dt

    now = dt.datetime.now(dt.timezone.utc)
    ms = int(now.timestamp() * 1000)
    iot.create_custom_metric(metricName="peers", metricType="ip-address-list", clientRequestToken="t")
    for index in range(3):
        doc = {
            "header": {"report_id": index + 1, "version": "1.0"},
            "custom_metrics": {"peers": [{"ip_list": [f"10.0.0.{index}"]}]},
        }
        server.store.record_report("gw", doc, ms - 1000 + index)
    pages = list(
        iot.get_paginator("list_metric_values").paginate(
            thingName="gw", metricName="peers", startTime=now - dt.timedelta(minutes=5), endTime=now
        )
    )
    assert [len(p["metricDatumList"]) for p in pages] == [2, 1]
    values = [d["value"] for p in pages for d in p["metricDatumList"]]
    assert values == [{"cidrs": ["10.0.0.0"]}, {"cidrs": ["10.0.0.1"]}, {"cidrs": ["10.0.0.2"]}]


def test_binds_loopback_only() -> None:
    with pytest.raises(ValueError, match="loopback only"):
        ControlPlaneServer(Store(), host="0.0.0.0")


def test_java_patterns_are_translated() -> None:
    graph = python_pattern(r"[\p{Graph}\x20]*")
    assert graph is not None and graph.fullmatch("CPU usage (%)") and not graph.fullmatch("tab\t")
    tag = python_pattern(r"^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$")
    assert tag is not None and tag.fullmatch("team name=edge@1") and not tag.fullmatch("bad!")
    assert python_pattern(r"\p{Unknown}+") is None
