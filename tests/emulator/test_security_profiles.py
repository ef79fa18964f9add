"""Security profiles on the local control plane, through a real boto3 client (and raw HTTP for the wire)."""

from __future__ import annotations

import copy
from typing import Any, Dict, List

import pytest

from tests.emulator.conftest import raw

# Quoted from the developer guide, "Device-side metrics", Bytes out (aws:all-bytes-out): the example, the example
# using a statisticalThreshold and the example using ML Detect.
GUIDE_RULE = {"name": "TCP outbound traffic", "metric": "aws:all-bytes-out", "criteria": {
    "comparisonOperator": "less-than-equals", "value": {"count": 4096}, "durationSeconds": 300,
    "consecutiveDatapointsToAlarm": 1, "consecutiveDatapointsToClear": 1}, "suppressAlerts": True}
GUIDE_STATISTICAL = {"name": "TCP outbound traffic", "metric": "aws:all-bytes-out", "criteria": {
    "comparisonOperator": "less-than-equals", "statisticalThreshold": {"statistic": "p50"}, "durationSeconds": 900,
    "consecutiveDatapointsToAlarm": 1, "consecutiveDatapointsToClear": 1}, "suppressAlerts": True}
GUIDE_ML = {"name": "Outbound traffic ML behavior", "metric": "aws:all-bytes-out", "criteria": {
    "consecutiveDatapointsToAlarm": 1, "consecutiveDatapointsToClear": 1,
    "mlDetectionConfig": {"confidenceLevel": "HIGH"}}, "suppressAlerts": True}
PORTS = {"name": "listening-tcp", "metric": "aws:listening-tcp-ports",
         "criteria": {"comparisonOperator": "in-port-set", "value": {"ports": [22, 443]}}}


def named(behavior: Dict[str, Any], name: str) -> Dict[str, Any]:
    """The guide's behavior under a name the model's BehaviorName pattern ([a-zA-Z0-9:_-]+) allows."""
    out = copy.deepcopy(behavior)
    out["name"] = name
    return out


def names(pages: List[Dict[str, Any]]) -> List[List[str]]:
    return [[p["name"] for p in page["securityProfileIdentifiers"]] for page in pages]


def test_create_then_describe_returns_the_behaviors_as_given(iot) -> None:
    behaviors = [named(GUIDE_RULE, "tcp-outbound"), named(GUIDE_STATISTICAL, "tcp-outbound-p50"), PORTS]
    created = iot.create_security_profile(securityProfileName="gateways", securityProfileDescription="Edge fleet",
                                          behaviors=behaviors)
    assert created["securityProfileArn"] == "arn:aws:iot:local:123456789012:securityprofile/gateways"
    described = iot.describe_security_profile(securityProfileName="gateways")
    assert described["behaviors"] == behaviors
    assert (described["securityProfileName"], described["securityProfileDescription"]) == ("gateways", "Edge fleet")
    assert described["securityProfileArn"] == created["securityProfileArn"]
    assert (described["version"], described["alertTargets"]) == (1, {})
    assert described["creationDate"].tzinfo is not None
    assert described["lastModifiedDate"] == described["creationDate"]


def test_describe_of_a_missing_profile_is_resource_not_found(server, iot) -> None:
    with pytest.raises(iot.exceptions.ResourceNotFoundException, match="Security profile nope does not exist"):
        iot.describe_security_profile(securityProfileName="nope")
    status, headers, body = raw(server, "GET", "/security-profiles/nope")
    assert (status, headers["x-amzn-ErrorType"]) == (404, "ResourceNotFoundException") and body["message"]


def test_create_twice_is_resource_already_exists(iot) -> None:
    iot.create_security_profile(securityProfileName="p", behaviors=[PORTS])
    with pytest.raises(iot.exceptions.ResourceAlreadyExistsException) as info:
        iot.create_security_profile(securityProfileName="p")
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    assert info.value.response["resourceArn"].endswith(":securityprofile/p")


def test_list_pages_and_filters_by_metric_and_dimension(server, iot) -> None:
    server.store.add_dimension("TopicFilterForAuthMessages")
    for index in range(4):
        iot.create_security_profile(securityProfileName=f"p{index}", behaviors=[PORTS])
    iot.create_security_profile(securityProfileName="scoped", behaviors=[{
        "name": "msgs", "metric": "aws:num-messages-sent",
        "metricDimension": {"dimensionName": "TopicFilterForAuthMessages", "operator": "IN"},
        "criteria": {"comparisonOperator": "less-than", "value": {"count": 10}, "durationSeconds": 300}}])
    pages = list(iot.get_paginator("list_security_profiles").paginate())
    assert names(pages) == [["p0", "p1"], ["p2", "p3"], ["scoped"]] and "nextToken" not in pages[-1]
    assert pages[0]["securityProfileIdentifiers"][0]["arn"].endswith(":securityprofile/p0")
    assert names([iot.list_security_profiles(maxResults=1)]) == [["p0"]]
    assert names(list(iot.get_paginator("list_security_profiles").paginate(
        metricName="aws:listening-tcp-ports"))) == [["p0", "p1"], ["p2", "p3"]]
    assert names([iot.list_security_profiles(dimensionName="TopicFilterForAuthMessages")]) == [["scoped"]]
    with pytest.raises(iot.exceptions.InvalidRequestException, match="Only one of metricName and dimensionName"):
        iot.list_security_profiles(metricName="m", dimensionName="TopicFilterForAuthMessages")
    with pytest.raises(iot.exceptions.ResourceNotFoundException, match="Dimension other does not exist"):
        iot.list_security_profiles(dimensionName="other")
    token = iot.list_security_profiles()["nextToken"]
    with pytest.raises(iot.exceptions.InvalidRequestException, match="different request"):
        iot.list_security_profiles(metricName="aws:listening-tcp-ports", nextToken=token)
    with pytest.raises(iot.exceptions.InvalidRequestException, match="less than or equal to 250"):
        iot.list_security_profiles(maxResults=251)


def test_delete_removes_the_profile_and_checks_the_expected_version(iot) -> None:
    iot.create_security_profile(securityProfileName="p", behaviors=[PORTS])
    with pytest.raises(iot.exceptions.VersionConflictException, match="version 1, not 7"):
        iot.delete_security_profile(securityProfileName="p", expectedVersion=7)
    iot.delete_security_profile(securityProfileName="p", expectedVersion=1)
    with pytest.raises(iot.exceptions.ResourceNotFoundException):
        iot.describe_security_profile(securityProfileName="p")
    iot.delete_security_profile(securityProfileName="p")  # the model names no ResourceNotFound here: a no-op
    assert iot.list_security_profiles()["securityProfileIdentifiers"] == []


def test_a_profile_created_over_the_api_guards_its_custom_metric(iot) -> None:
    iot.create_custom_metric(metricName="cpu_usage", metricType="number", clientRequestToken="t")
    iot.create_security_profile(securityProfileName="cpu", behaviors=[{
        "name": "cpu-high", "metric": "cpu_usage",
        "criteria": {"comparisonOperator": "less-than", "value": {"number": 90.0}}}])
    assert names([iot.list_security_profiles(metricName="cpu_usage")]) == [["cpu"]]
    with pytest.raises(iot.exceptions.InvalidRequestException, match="used by security profile"):
        iot.delete_custom_metric(metricName="cpu_usage")
    iot.delete_security_profile(securityProfileName="cpu")
    iot.delete_custom_metric(metricName="cpu_usage")


def test_the_guides_examples_are_valid_once_their_names_fit_the_model(iot) -> None:
    # The guide names its examples with spaces; the model's BehaviorName pattern refuses them.
    with pytest.raises(iot.exceptions.InvalidRequestException,
                       match=r"behaviors.1.member.name.*regular expression pattern: \[a-zA-Z0-9:_-\]\+"):
        iot.validate_security_profile_behaviors(behaviors=[GUIDE_RULE])
    # Rule, statisticalThreshold and ML Detect: all valid in the cloud (two of them cannot run on a device).
    behaviors = [named(GUIDE_RULE, "tcp-out"), named(GUIDE_STATISTICAL, "tcp-out-p50"), named(GUIDE_ML, "tcp-out-ml")]
    answer = iot.validate_security_profile_behaviors(behaviors=behaviors)
    assert (answer["valid"], answer["validationErrors"]) == (True, [])
    cloud_side = {"name": "authz", "metric": "aws:num-authorization-failures",
                  "criteria": {"comparisonOperator": "less-than", "value": {"count": 5}, "durationSeconds": 300}}
    assert iot.validate_security_profile_behaviors(behaviors=[cloud_side, PORTS])["valid"] is True


def test_validate_names_what_breaks_the_per_metric_rules(iot) -> None:
    wrong = copy.deepcopy(named(GUIDE_RULE, "tcp-out"))
    wrong["criteria"]["durationSeconds"] = 301
    wrong["criteria"]["comparisonOperator"] = "in-port-set"
    ports_as_count = {"name": "ports", "metric": "aws:listening-tcp-ports",
                      "criteria": {"comparisonOperator": "in-port-set", "value": {"count": 22}}}
    answer = iot.validate_security_profile_behaviors(behaviors=[wrong, ports_as_count])
    messages = [e["errorMessage"] for e in answer["validationErrors"]]
    assert answer["valid"] is False
    assert any(m.startswith("behaviors[0].criteria.comparisonOperator: in-port-set does not apply") for m in messages)
    assert any(m.startswith("behaviors[0].criteria.durationSeconds: must be one of 300, 600") for m in messages)
    assert any(m.startswith("behaviors[1].criteria.value") and "ports" in m for m in messages), messages
    with pytest.raises(iot.exceptions.InvalidRequestException, match="Invalid behaviors: behaviors"):
        iot.create_security_profile(securityProfileName="bad", behaviors=[wrong])
    assert iot.list_security_profiles()["securityProfileIdentifiers"] == []


def test_validate_knows_the_accounts_custom_metrics(iot) -> None:
    behavior = {"name": "services", "metric": "services",
                "criteria": {"comparisonOperator": "in-set", "value": {"strings": ["sshd", "mosquitto"]}}}
    first = iot.validate_security_profile_behaviors(behaviors=[behavior])
    assert first["valid"] is False and "nor a declared custom metric" in first["validationErrors"][0]["errorMessage"]
    iot.create_custom_metric(metricName="services", metricType="string-list", clientRequestToken="t")
    assert iot.validate_security_profile_behaviors(behaviors=[behavior])["valid"] is True
    numeric = copy.deepcopy(behavior)
    numeric["criteria"] = {"comparisonOperator": "greater-than", "value": {"number": 1}}
    assert iot.validate_security_profile_behaviors(behaviors=[numeric])["valid"] is False


def test_the_wire_format_is_the_models(server, iot) -> None:
    status, _, body = raw(server, "POST", "/security-profiles/wire",
                          {"securityProfileDescription": "d", "behaviors": [PORTS]})
    assert status == 200 and body == {"securityProfileName": "wire",
                                      "securityProfileArn": "arn:aws:iot:local:123456789012:securityprofile/wire"}
    status, _, body = raw(server, "GET", "/security-profiles/wire")
    assert status == 200 and body["behaviors"] == [PORTS] and isinstance(body["creationDate"], float)
    status, _, body = raw(server, "POST", "/security-profile-behaviors/validate", {"behaviors": [PORTS]})
    assert (status, body) == (200, {"valid": True, "validationErrors": []})
    status, headers, body = raw(server, "POST", "/security-profile-behaviors/validate", {})
    assert status == 400 and "Value null at 'behaviors'" in body["message"]
    status, headers, _ = raw(server, "PATCH", "/security-profiles/wire", {})  # UpdateSecurityProfile: not served
    assert (status, headers["x-amzn-ErrorType"]) == (404, "UnknownOperationException")
    assert [op for op, _ in server.calls()][:3] == [
        "CreateSecurityProfile", "DescribeSecurityProfile", "ValidateSecurityProfileBehaviors"]


def test_throttling_is_injected_on_profile_operations(server, iot) -> None:
    iot.create_security_profile(securityProfileName="p", behaviors=[PORTS])
    server.inject_errors(1, operation="DescribeSecurityProfile")
    # botocore's default (legacy) retries absorb one ThrottlingException
    assert iot.describe_security_profile(securityProfileName="p")["ResponseMetadata"]["RetryAttempts"] == 1
    assert server.calls("DescribeSecurityProfile") == [("DescribeSecurityProfile", 400), ("DescribeSecurityProfile", 200)]
