"""Behaviors that can never be judged: their metric is in no round, because no configured collector emits it."""

from __future__ import annotations

from agent.behaviors.coverage import cloud_names, unjudgeable_behaviors
from agent.catalog import STANDARD_CLOUD_NAMES
from agent.config.load import parse_config
from agent.config.model import Config

NEVER = 'so this behavior can never be judged (it would stay "no data")'


def config(behaviors: str, *, collectors: str = "", health: str = "'off'") -> Config:
    return parse_config(
        "thing_name: gw-1\nsinks: [{type: textfile, path: /t/a.prom}]\n"
        f"health_metrics: {health}\n"
        "custom_metrics: {cpu_usage: number, door_open: number}\n"
        + (f"collectors:\n{collectors}" if collectors else "")
        + "behaviors:\n" + behaviors,
        "agent.yaml",
    )


def rule(name: str, metric: str, criteria: str = "{comparisonOperator: less-than, value: {number: 1}}") -> str:
    return f"  - {{name: {name}, metric: {metric}, criteria: {criteria}}}\n"


COUNT = "{comparisonOperator: less-than, value: {count: 5}}"
PORTS = "{comparisonOperator: in-port-set, value: {ports: [22]}}"


def test_cloud_names_are_the_device_side_metrics_of_a_standard_metric_and_a_custom_metric_itself() -> None:
    assert cloud_names(["listening_tcp_ports", "cpu_usage"]) == {
        "aws:listening-tcp-ports", "aws:num-listening-tcp-ports", "cpu_usage"}
    assert cloud_names(["network_stats"]) == set(STANDARD_CLOUD_NAMES["network_stats"])
    assert cloud_names([]) == frozenset()


def test_a_behavior_on_a_declared_custom_metric_no_collector_emits_is_named() -> None:
    cfg = config(rule("Cpu", "cpu_usage") + rule("Door", "door_open"),
                 collectors="  - {type: system, metrics: [cpu_usage]}\n")
    assert unjudgeable_behaviors(cfg, cloud_names(["cpu_usage"])) == [
        ("behaviors[1].metric", f"no collector in `collectors:` emits custom metric 'door_open', {NEVER}; "
                                "add a collector that emits it, or remove the behavior"),
    ]
    assert unjudgeable_behaviors(cfg, cloud_names(["cpu_usage", "door_open"])) == []


def test_a_behavior_on_a_standard_metric_whose_collector_is_absent_is_named_with_the_collector() -> None:
    cfg = config(rule("Tcp", "aws:num-listening-tcp-ports", COUNT) + rule("Udp", "aws:listening-udp-ports", PORTS)
                 + rule("Out", "aws:all-bytes-out", COUNT) + rule("Peers", "aws:num-established-tcp-connections", COUNT))
    emitted = cloud_names(["listening_udp_ports"])  # listening_ports with protocols: [udp]
    found = unjudgeable_behaviors(cfg, emitted, {"listening_tcp_ports": "listening_ports"})
    assert found == [
        ("behaviors[0].metric", "aws:num-listening-tcp-ports is derived from listening_tcp_ports, which no collector "
                                f"in `collectors:` emits, {NEVER}; the listening_ports collector emits it by default"),
        ("behaviors[2].metric", f"aws:all-bytes-out is derived from network_stats, which no collector in "
                                f"`collectors:` emits, {NEVER}"),
        ("behaviors[3].metric", "aws:num-established-tcp-connections is derived from tcp_connections, which no "
                                f"collector in `collectors:` emits, {NEVER}"),
    ]
    everything = cloud_names(STANDARD_CLOUD_NAMES)
    assert unjudgeable_behaviors(cfg, everything) == []


def test_the_health_metrics_count_as_emitted_only_when_health_metrics_sends_them() -> None:
    behaviors = rule("Outbox", "agent_outbox_pending", "{comparisonOperator: less-than, value: {number: 100}}")
    assert unjudgeable_behaviors(config(behaviors, health="custom_metrics"), frozenset()) == []


def test_a_hand_declared_health_metric_without_health_metrics_is_named() -> None:
    cfg = parse_config("thing_name: gw-1\nsinks: [{type: textfile, path: /t/a.prom}]\n"
                       "custom_metrics: {agent_outbox_pending: number}\nbehaviors:\n"
                       + rule("Outbox", "agent_outbox_pending"), "agent.yaml")
    assert unjudgeable_behaviors(cfg, frozenset()) == [
        ("behaviors[0].metric", "'agent_outbox_pending' is the agent's own health, sent only with "
                                f"`health_metrics: custom_metrics`, {NEVER}"),
    ]


def test_no_behaviors_nothing_to_say() -> None:
    cfg = parse_config("thing_name: gw-1\nsinks: [{type: textfile, path: /t/a.prom}]\n", "agent.yaml")
    assert unjudgeable_behaviors(cfg, frozenset()) == []
