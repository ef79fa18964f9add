"""The load-time checks of `behaviors`: every problem with its exact YAML path, and the AWS docs' own examples."""

from __future__ import annotations

import copy
from typing import Any, Dict, List, Tuple

import pytest

from agent.behaviors.check import (
    DIMENSION_REASON,
    ML_REASON,
    NO_CRITERIA_REASON,
    STATISTICAL_REASON,
    check_behaviors,
    device_support,
    validation_errors,
)
from agent.behaviors.model import Behavior, Criteria, Operator
from agent.catalog import DEVICE_METRICS
from agent.schema import Checker
from tests.behaviors.helpers import CUSTOM

ISSUE_EXAMPLE: List[Dict[str, Any]] = [
    {
        "name": "OnlyKnownPorts",
        "metric": "aws:listening-tcp-ports",
        "criteria": {"comparisonOperator": "in-port-set", "value": {"ports": [22, 8883]}},
    },
    {
        "name": "CpuHot",
        "metric": "cpu_usage",
        "criteria": {
            "comparisonOperator": "greater-than",
            "value": {"number": 90},
            "consecutiveDatapointsToAlarm": 3,
            "consecutiveDatapointsToClear": 2,
        },
    },
]


def problems(raw: Any) -> List[Tuple[str, str]]:
    checker = Checker("agent.yaml")
    check_behaviors(raw, "behaviors", checker, CUSTOM)
    return [(p.path, p.message) for p in checker.problems]


def one_problem(raw: Any) -> Tuple[str, str]:
    found = problems(raw)
    assert len(found) == 1, found
    return found[0]


def bytes_out(**criteria: Any) -> Dict[str, Any]:
    base: Dict[str, Any] = {"comparisonOperator": "less-than-equals", "value": {"count": 4096}}
    base.update(criteria)
    return {"name": "Traffic", "metric": "aws:all-bytes-out", "criteria": {k: v for k, v in base.items() if v is not ...}}


def test_the_issue_example_loads_as_typed_behaviors() -> None:
    configured = copy.deepcopy(ISSUE_EXAMPLE)
    checker = Checker("agent.yaml")
    behaviors = check_behaviors(configured, "behaviors", checker, CUSTOM)
    assert checker.problems == []
    assert behaviors == (
        Behavior("OnlyKnownPorts", "aws:listening-tcp-ports", Criteria(Operator.IN_PORT_SET, {"ports": [22, 8883]}),
                 raw=ISSUE_EXAMPLE[0]),
        Behavior("CpuHot", "cpu_usage", Criteria(Operator.GREATER_THAN, {"number": 90}, None, 3, 2),
                 raw=ISSUE_EXAMPLE[1]),
    )
    configured[0]["criteria"]["value"]["ports"].append(23)  # the loader's objects may change later: a copy
    assert behaviors[0].raw == ISSUE_EXAMPLE[0]
    assert behaviors[0].criteria.value == {"ports": [22, 8883]}


def test_nothing_configured_is_no_behavior() -> None:
    assert check_behaviors(None, "behaviors", Checker("agent.yaml"), CUSTOM) == ()
    assert problems([]) == []


def test_the_problem_paths_point_at_the_offending_item() -> None:
    raw = copy.deepcopy(ISSUE_EXAMPLE)
    raw[0]["criteria"]["value"]["ports"] = [0, 65535, 65536, True]
    assert problems(raw) == [
        ("behaviors[0].criteria.value.ports[2]", "expected a port from 0 to 65535, got 65536"),
        ("behaviors[0].criteria.value.ports[3]", "expected a port from 0 to 65535, got a boolean (true)"),
    ]


def test_every_problem_is_reported_not_only_the_first() -> None:
    raw = copy.deepcopy(ISSUE_EXAMPLE)
    raw[0]["criteria"]["comparisonOperator"] = "greater-than"
    raw[1]["criteria"]["consecutiveDatapointsToAlarm"] = 0
    raw[1]["criteria"]["consecutiveDatapointsToClear"] = 11
    assert [path for path, _ in problems(raw)] == [
        "behaviors[0].criteria.comparisonOperator",
        "behaviors[1].criteria.consecutiveDatapointsToAlarm",
        "behaviors[1].criteria.consecutiveDatapointsToClear",
    ]


def test_a_bad_behavior_is_left_out_of_the_result() -> None:
    raw = copy.deepcopy(ISSUE_EXAMPLE)
    raw[0]["metric"] = "aws:message-byte-size"
    checker = Checker("agent.yaml")
    assert [b.name for b in check_behaviors(raw, "behaviors", checker, CUSTOM)] == ["CpuHot"]
    assert [p.path for p in checker.problems] == ["behaviors[0].metric"]


@pytest.mark.parametrize(
    "raw, path, message",
    [
        ("OnlyKnownPorts", "behaviors", "expected a list of behaviors, got 'OnlyKnownPorts'"),
        (["OnlyKnownPorts"], "behaviors[0]", "expected a behavior (a mapping with name, metric and criteria)"),
        ([{**ISSUE_EXAMPLE[0], "suppressAlert": True}], "behaviors[0].suppressAlert",
         'unknown key (did you mean "suppressAlerts"?)'),
        ([{**ISSUE_EXAMPLE[0], "suppressAlerts": "yes"}], "behaviors[0].suppressAlerts", "expected true or false"),
        ([{**ISSUE_EXAMPLE[0], "name": "Only known ports"}], "behaviors[0].name",
         "'Only known ports' is not a valid behavior name: 1 to 128 of a-z A-Z 0-9 : _ -"),
        ([{**ISSUE_EXAMPLE[0], "name": "x" * 129}], "behaviors[0].name", "is not a valid behavior name"),
        ([{k: v for k, v in ISSUE_EXAMPLE[0].items() if k != "name"}], "behaviors[0].name",
         "required key is missing"),
        ([{k: v for k, v in ISSUE_EXAMPLE[0].items() if k != "criteria"}], "behaviors[0].criteria",
         f"required key is missing: {NO_CRITERIA_REASON}"),
        ([{**ISSUE_EXAMPLE[0], "criteria": []}], "behaviors[0].criteria", "expected a mapping, got a list"),
        ([bytes_out(comparisonOperater="less-than")], "behaviors[0].criteria.comparisonOperater",
         'unknown key (did you mean "comparisonOperator"?)'),
        ([bytes_out(comparisonOperator="less_than")], "behaviors[0].criteria.comparisonOperator",
         'expected one of less-than, less-than-equals, greater-than, greater-than-equals, got \'less_than\' '
         '(did you mean "less-than"?)'),
        ([bytes_out(comparisonOperator=...)], "behaviors[0].criteria.comparisonOperator",
         "required key is missing (one of less-than, less-than-equals, greater-than, greater-than-equals)"),
        ([bytes_out(comparisonOperator="in-port-set")], "behaviors[0].criteria.comparisonOperator",
         "in-port-set does not apply to aws:all-bytes-out; use one of less-than, less-than-equals, greater-than, "
         "greater-than-equals"),
        ([bytes_out(value=...)], "behaviors[0].criteria.value",
         "required key is missing: the value to compare with (count: a non-negative whole number)"),
        ([bytes_out(value=4096)], "behaviors[0].criteria.value", "expected a mapping with one of count, cidrs"),
        ([bytes_out(value={"count": -1})], "behaviors[0].criteria.value.count",
         "expected a non-negative whole number, got -1"),
        ([bytes_out(value={"count": 1.5})], "behaviors[0].criteria.value.count", "expected a non-negative whole"),
        ([bytes_out(value={"cuont": 4096})], "behaviors[0].criteria.value.cuont",
         'unknown key (did you mean "count"?)'),
        ([bytes_out(durationSeconds=120)], "behaviors[0].criteria.durationSeconds",
         "must be one of 300, 600, 900, 1800, 3600 seconds for aws:all-bytes-out, got 120"),
        ([bytes_out(durationSeconds="300")], "behaviors[0].criteria.durationSeconds",
         "expected a whole number of seconds, got '300'"),
        ([bytes_out(consecutiveDatapointsToAlarm="3")], "behaviors[0].criteria.consecutiveDatapointsToAlarm",
         "expected a whole number from 1 to 10, got '3'"),
        ([bytes_out(consecutiveDatapointsToClear=True)], "behaviors[0].criteria.consecutiveDatapointsToClear",
         "expected a whole number from 1 to 10, got a boolean (true)"),
        ([{**ISSUE_EXAMPLE[0], "criteria": {**ISSUE_EXAMPLE[0]["criteria"], "durationSeconds": 300}}],
         "behaviors[0].criteria.durationSeconds",
         "aws:listening-tcp-ports takes no durationSeconds (it is judged per report)"),
        ([{**ISSUE_EXAMPLE[1], "criteria": {**ISSUE_EXAMPLE[1]["criteria"], "durationSeconds": 300}}],
         "behaviors[0].criteria.durationSeconds",
         "cpu_usage takes no durationSeconds (the guide lists no durations for custom metrics)"),
        ([{"name": "Peers", "metric": "peers",
           "criteria": {"comparisonOperator": "in-cidr-set", "value": {"cidrs": ["10.0.0.0/8", "10.0.0.300/8"]}}}],
         "behaviors[0].criteria.value.cidrs[1]", 'expected a CIDR like "10.0.0.0/8" or an IP address, got '
                                                  "'10.0.0.300/8'"),
        ([{"name": "Peers", "metric": "peers",
           "criteria": {"comparisonOperator": "in-cidr-set", "value": {"cidrs": "10.0.0.0/8"}}}],
         "behaviors[0].criteria.value.cidrs", 'expected a list of CIDRs like "10.0.0.0/8" or addresses, got '
                                              "'10.0.0.0/8'"),
        ([{"name": "Svc", "metric": "services",
           "criteria": {"comparisonOperator": "in-set", "value": {"strings": ["sshd", 22]}}}],
         "behaviors[0].criteria.value.strings[1]", "expected a string, got 22"),
        ([{"name": "Load", "metric": "core_load",
           "criteria": {"comparisonOperator": "not-in-set", "value": {"numbers": [1, "2"]}}}],
         "behaviors[0].criteria.value.numbers[1]", "expected a number, got '2'"),
        ([{"name": "Load", "metric": "core_load",
           "criteria": {"comparisonOperator": "greater-than", "value": {"numbers": [1]}}}],
         "behaviors[0].criteria.comparisonOperator", "greater-than does not apply to core_load; use one of in-set, "
                                                      "not-in-set"),
        ([{"name": "Cpu", "metric": "cpu_usage",
           "criteria": {"comparisonOperator": "greater-than", "value": {"number": float("inf")}}}],
         "behaviors[0].criteria.value.number", "expected a number, got inf"),
        ([{**ISSUE_EXAMPLE[0], "metricDimension": {"dimensionName": "TopicFilter", "operator": "IN"}}],
         "behaviors[0].metricDimension", DIMENSION_REASON),
        ([{**ISSUE_EXAMPLE[0], "metric": "aws:num-authorization-failures"}], "behaviors[0].metric",
         "aws:num-authorization-failures is a cloud-side metric (the requests AWS IoT refuses): AWS IoT measures it, "
         "the device cannot"),
    ],
)
def test_one_problem(raw: Any, path: str, message: str) -> None:
    found_path, found_message = problems(raw)[0]
    assert (found_path, message in found_message) == (path, True), found_message


def test_the_value_member_must_be_the_metrics() -> None:
    assert problems([bytes_out(value={"number": 4096})]) == [
        ("behaviors[0].criteria.value.number", "aws:all-bytes-out compares with count (a non-negative whole number), "
                                               "not number"),
        ("behaviors[0].criteria.value", "needs count (a non-negative whole number) to compare with aws:all-bytes-out"),
    ]
    assert problems([bytes_out(value={"count": 4096, "ports": [1]})]) == [
        ("behaviors[0].criteria.value.ports", "aws:all-bytes-out compares with count (a non-negative whole number), "
                                              "not ports"),
    ]


def test_duplicate_names_are_refused() -> None:
    raw = [ISSUE_EXAMPLE[0], ISSUE_EXAMPLE[1], {**ISSUE_EXAMPLE[1], "name": "OnlyKnownPorts"}]
    assert one_problem(raw) == ("behaviors[2].name", "duplicate behavior name 'OnlyKnownPorts' (also behaviors[0])")


def test_at_most_100_behaviors() -> None:
    raw = [{**ISSUE_EXAMPLE[0], "name": f"B{i}"} for i in range(101)]
    assert one_problem(raw) == ("behaviors", "has 101 behaviors; a security profile holds at most 100")
    assert problems(raw[:100]) == []


def test_an_unknown_metric_names_the_declared_ones() -> None:
    path, message = one_problem([{**ISSUE_EXAMPLE[1], "metric": "cpu_usgae"}])
    assert path == "behaviors[0].metric"
    assert message == ("'cpu_usgae' is neither a device-side metric nor a declared custom metric "
                       '(did you mean "cpu_usage"?) (declared custom metrics: core_load, cpu_usage, peers, services)')
    checker = Checker("agent.yaml")
    check_behaviors([ISSUE_EXAMPLE[1]], "behaviors", checker, {})
    assert [p.message for p in checker.problems] == [
        "'cpu_usage' is neither a device-side metric nor a declared custom metric (no custom metric is declared)"
    ]


def test_an_unknown_device_side_metric_gets_a_suggestion() -> None:
    path, message = one_problem([{**ISSUE_EXAMPLE[0], "metric": "aws:listening-tcp-port"}])
    assert path == "behaviors[0].metric"
    assert message.startswith("'aws:listening-tcp-port' is not a device-side metric "
                              '(did you mean "aws:listening-tcp-ports"?)')


def test_cloud_only_criteria_are_refused_with_the_reason() -> None:
    statistical = bytes_out(value=..., statisticalThreshold={"statistic": "p90"}, durationSeconds=300)
    ml = {"name": "Ml", "metric": "aws:all-bytes-out",
          "criteria": {"mlDetectionConfig": {"confidenceLevel": "HIGH"}}}
    assert problems([statistical, ml]) == [
        ("behaviors[0].criteria.statisticalThreshold", f"cannot be evaluated on the device: {STATISTICAL_REASON}"),
        ("behaviors[1].criteria.mlDetectionConfig", f"cannot be evaluated on the device: {ML_REASON}"),
    ]


def test_the_problem_carries_the_file_and_line() -> None:
    checker = Checker("agent.yaml", lines={"behaviors[0]": 12, "behaviors[0].criteria.value.ports[0]": 15})
    raw = copy.deepcopy(ISSUE_EXAMPLE[:1])
    raw[0]["criteria"]["value"]["ports"] = [-1]
    raw[0]["name"] = "bad name"
    check_behaviors(raw, "behaviors", checker, CUSTOM)
    assert [str(p) for p in checker.problems] == [
        "agent.yaml:12: behaviors[0].name: 'bad name' is not a valid behavior name: 1 to 128 of a-z A-Z 0-9 : _ -",
        "agent.yaml:15: behaviors[0].criteria.value.ports[0]: expected a port from 0 to 65535, got -1",
    ]


def test_validation_errors_has_the_same_rules_as_pairs() -> None:
    raw = copy.deepcopy(ISSUE_EXAMPLE)
    raw[1]["criteria"]["consecutiveDatapointsToAlarm"] = 20
    assert validation_errors(raw, CUSTOM) == [
        ("behaviors[1].criteria.consecutiveDatapointsToAlarm", "expected a whole number from 1 to 10, got 20"),
    ]
    assert validation_errors(ISSUE_EXAMPLE, CUSTOM) == []


# -- the AWS docs' own examples ------------------------------------------------------------------
# Quoted from the developer guide, "Device-side metrics" (the rule examples of each metric).

RULE_EXAMPLES: List[Dict[str, Any]] = [
    {"name": "TCP outbound traffic", "metric": "aws:all-bytes-out",
     "criteria": {"comparisonOperator": "less-than-equals", "value": {"count": 4096}, "durationSeconds": 300,
                  "consecutiveDatapointsToAlarm": 1, "consecutiveDatapointsToClear": 1}, "suppressAlerts": True},
    {"name": "TCP inbound traffic", "metric": "aws:all-bytes-in",
     "criteria": {"comparisonOperator": "less-than-equals", "value": {"count": 4096}, "durationSeconds": 300,
                  "consecutiveDatapointsToAlarm": 1, "consecutiveDatapointsToClear": 1}, "suppressAlerts": True},
    {"name": "Max TCP Ports", "metric": "aws:num-listening-tcp-ports",
     "criteria": {"comparisonOperator": "less-than-equals", "value": {"count": 5}, "durationSeconds": 300,
                  "consecutiveDatapointsToAlarm": 1, "consecutiveDatapointsToClear": 1}, "suppressAlerts": True},
    {"name": "Max UDP Ports", "metric": "aws:num-listening-udp-ports",
     "criteria": {"comparisonOperator": "less-than-equals", "value": {"count": 5}, "durationSeconds": 300,
                  "consecutiveDatapointsToAlarm": 1, "consecutiveDatapointsToClear": 1}, "suppressAlerts": True},
    {"name": "TCP outbound traffic", "metric": "aws:all-packets-out",
     "criteria": {"comparisonOperator": "less-than-equals", "value": {"count": 100}, "durationSeconds": 300,
                  "consecutiveDatapointsToAlarm": 1, "consecutiveDatapointsToClear": 1}, "suppressAlerts": True},
    {"name": "TCP inbound traffic", "metric": "aws:all-packets-in",
     "criteria": {"comparisonOperator": "less-than-equals", "value": {"count": 100}, "durationSeconds": 300,
                  "consecutiveDatapointsToAlarm": 1, "consecutiveDatapointsToClear": 1}, "suppressAlerts": True},
    {"name": "Listening TCP Ports", "metric": "aws:listening-tcp-ports",
     "criteria": {"comparisonOperator": "in-port-set", "value": {"ports": [443, 80]}}, "suppressAlerts": True},
    {"name": "Listening UDP Ports", "metric": "aws:listening-udp-ports",
     "criteria": {"comparisonOperator": "in-port-set", "value": {"ports": [1025, 2000]}}},
    {"name": "TCP Connection Count", "metric": "aws:num-established-tcp-connections",
     "criteria": {"comparisonOperator": "less-than-equals", "value": {"count": 3},
                  "consecutiveDatapointsToAlarm": 1, "consecutiveDatapointsToClear": 1}, "suppressAlerts": True},
]

# The page's "Destination IPs" example, as printed: its metric is the cloud-side aws:source-ip-address.
DESTINATION_EXAMPLE: Dict[str, Any] = {
    "name": "Denied source IPs", "metric": "aws:source-ip-address",
    "criteria": {"comparisonOperator": "not-in-cidr-set", "value": {"cidrs": ["12.8.0.0/16", "15.102.16.0/24"]}},
    "suppressAlerts": True,
}

STATISTICAL_EXAMPLE: Dict[str, Any] = {
    "name": "TCP outbound traffic", "metric": "aws:all-bytes-out",
    "criteria": {"comparisonOperator": "less-than-equals", "statisticalThreshold": {"statistic": "p50"},
                 "durationSeconds": 900, "consecutiveDatapointsToAlarm": 1, "consecutiveDatapointsToClear": 1},
    "suppressAlerts": True,
}

ML_EXAMPLE: Dict[str, Any] = {
    "name": "Outbound traffic ML behavior", "metric": "aws:all-bytes-out",
    "criteria": {"consecutiveDatapointsToAlarm": 1, "consecutiveDatapointsToClear": 1,
                 "mlDetectionConfig": {"confidenceLevel": "HIGH"}},
    "suppressAlerts": True,
}

# "Custom metrics": the create-security-profile example (a number metric, and a cloud-side one).
CUSTOM_EXAMPLE: List[Dict[str, Any]] = [
    {"name": "great-than-75", "metric": "batteryPercentage",
     "criteria": {"comparisonOperator": "greater-than", "value": {"number": 75},
                  "consecutiveDatapointsToAlarm": 5, "consecutiveDatapointsToClear": 1}},
    {"name": "cellularBandwidth", "metric": "aws:message-byte-size",
     "criteria": {"comparisonOperator": "less-than", "value": {"count": 128},
                  "consecutiveDatapointsToAlarm": 1, "consecutiveDatapointsToClear": 1}},
]


def api_name(name: str) -> str:
    return name.replace(" ", "-")


@pytest.mark.parametrize("example", RULE_EXAMPLES, ids=lambda e: str(e["metric"]))
def test_the_device_side_rule_examples_pass(example: Dict[str, Any]) -> None:
    """Every rule in them passes; only their display names break the API's BehaviorName pattern
    ([a-zA-Z0-9:_-]+, botocore), which the service enforces and the guide's examples ignore."""
    assert validation_errors([{**example, "name": api_name(example["name"])}], {}) == []
    assert device_support(example) is None
    assert validation_errors([example], {}) == (
        [] if " " not in example["name"] else
        [("behaviors[0].name", f"{example['name']!r} is not a valid behavior name: 1 to 128 of a-z A-Z 0-9 : _ -")]
    )


def test_every_device_side_metric_has_a_rule_example() -> None:
    assert {e["metric"] for e in RULE_EXAMPLES} | {"aws:destination-ip-addresses"} == set(DEVICE_METRICS)


def test_the_destination_ip_example_names_a_cloud_side_metric() -> None:
    example = {**DESTINATION_EXAMPLE, "name": "Denied-source-IPs"}
    assert validation_errors([example], {}) == [
        ("behaviors[0].metric", "aws:source-ip-address is a cloud-side metric (the address AWS IoT sees the "
                                "connection come from): AWS IoT measures it, the device cannot"),
    ]
    assert validation_errors([{**example, "metric": "aws:destination-ip-addresses"}], {}) == []


def test_the_statistical_threshold_example_is_refused_with_the_reason() -> None:
    example = {**STATISTICAL_EXAMPLE, "name": "TCP-outbound-traffic"}
    assert validation_errors([example], {}) == [
        ("behaviors[0].criteria.statisticalThreshold", f"cannot be evaluated on the device: {STATISTICAL_REASON}"),
    ]
    assert device_support(STATISTICAL_EXAMPLE) == STATISTICAL_REASON
    connections = {  # the page's statisticalThreshold example of aws:num-established-tcp-connections
        "name": "TCP-Connection-Count", "metric": "aws:num-established-tcp-connections",
        "criteria": {"comparisonOperator": "less-than-equals", "statisticalThreshold": {"statistic": "p90"},
                     "durationSeconds": 900, "consecutiveDatapointsToAlarm": 1, "consecutiveDatapointsToClear": 1},
        "suppressAlerts": True,
    }
    assert validation_errors([connections], {}) == [
        ("behaviors[0].criteria.statisticalThreshold", f"cannot be evaluated on the device: {STATISTICAL_REASON}"),
    ]


def test_the_ml_detect_example_is_refused_with_the_reason() -> None:
    example = {**ML_EXAMPLE, "name": "Outbound-traffic-ML-behavior"}
    assert validation_errors([example], {}) == [
        ("behaviors[0].criteria.mlDetectionConfig", f"cannot be evaluated on the device: {ML_REASON}"),
    ]
    assert device_support(ML_EXAMPLE) == ML_REASON


def test_the_custom_metric_example() -> None:
    from agent.catalog import MetricType

    assert validation_errors(CUSTOM_EXAMPLE, {"batteryPercentage": MetricType.NUMBER}) == [
        ("behaviors[1].metric", "aws:message-byte-size is a cloud-side metric (the size of each message as AWS IoT "
                                "receives it): AWS IoT measures it, the device cannot"),
    ]
    assert [device_support(b) for b in CUSTOM_EXAMPLE] == [
        None,
        "aws:message-byte-size is a cloud-side metric (the size of each message as AWS IoT receives it): "
        "AWS IoT measures it, the device cannot",
    ]


@pytest.mark.parametrize(
    "behavior, reason",
    [
        ({"name": "a", "metric": "aws:listening-tcp-ports"}, NO_CRITERIA_REASON),
        ({**ISSUE_EXAMPLE[0], "metricDimension": {"dimensionName": "Topics"}}, DIMENSION_REASON),
        ({**ISSUE_EXAMPLE[0], "metric": "aws:not-a-metric"}, "aws:not-a-metric is not a device-side metric"),
        (ISSUE_EXAMPLE[1], None),
    ],
)
def test_device_support(behavior: Dict[str, Any], reason: Any) -> None:
    assert device_support(behavior) == reason
