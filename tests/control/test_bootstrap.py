"""`defender-agent bootstrap` against the local control plane, with a real boto3 client over HTTP."""

from __future__ import annotations

from typing import Any, Callable, List, Tuple

import pytest

from agent.control import bootstrap as bs
from agent.control import plan_text
from agent.control.aws import RetryPolicy
from devkit.emulator.controlplane import ControlPlaneServer

pytestmark = pytest.mark.usefixtures("aws_env")

Cli = Callable[..., Tuple[int, str, str]]


def names_in_cloud(iot: Any) -> List[str]:
    pages = iot.get_paginator("list_custom_metrics").paginate()
    return sorted(n for page in pages for n in page["metricNames"])


def run_bootstrap(cli: Cli, config: str, emulator: ControlPlaneServer, *extra: str) -> Tuple[int, str, str]:
    return cli("bootstrap", "--config", config, "--endpoint-url", emulator.url, *extra)


def test_first_run_creates_every_declared_metric(emulator, store, iot, cli, write_config) -> None:
    code, out, err = run_bootstrap(cli, write_config(), emulator)
    assert code == 0, err
    assert names_in_cloud(iot) == ["core_load", "cpu_usage", "peers", "services"]
    cpu = iot.describe_custom_metric(metricName="cpu_usage")
    assert (cpu["metricType"], cpu["displayName"]) == ("number", "CPU usage")
    assert iot.describe_custom_metric(metricName="peers")["metricType"] == "ip-address-list"
    assert store.describe_metric("cpu_usage").tags == (("team", "edge"),)
    assert "Bootstrap done: 4 created" in out
    assert "create     cpu_usage: number, display name 'CPU usage', 1 tag(s) (created)" in out


def test_second_run_changes_nothing(emulator, cli, write_config) -> None:
    config = write_config()
    assert run_bootstrap(cli, config, emulator)[0] == 0
    before = len(emulator.calls())
    code, out, _ = run_bootstrap(cli, config, emulator)
    assert code == 0
    assert "Bootstrap done: 4 unchanged" in out
    made = [op for op, _ in emulator.calls()[before:]]
    assert made == ["DescribeCustomMetric"] * 4  # read-only: no create, update or delete


def test_display_name_drift_is_updated(emulator, iot, cli, write_config) -> None:
    assert run_bootstrap(cli, write_config(), emulator)[0] == 0
    drifted = "custom_metrics:\n  cpu_usage: {type: number, display_name: CPU busy percent}\n"
    code, out, _ = run_bootstrap(cli, write_config(drifted), emulator)
    assert code == 0
    assert "update     cpu_usage: display name 'CPU usage' -> 'CPU busy percent'" in out
    assert iot.describe_custom_metric(metricName="cpu_usage")["displayName"] == "CPU busy percent"
    assert emulator.calls("UpdateCustomMetric") == [("UpdateCustomMetric", 200)]


def test_type_conflict_fails_clearly_and_changes_nothing(emulator, store, iot, cli, write_config) -> None:
    store.create_metric("core_load", "number", None, (), "someone-else")
    code, out, _ = run_bootstrap(cli, write_config(), emulator)
    assert code == 1
    line = next(x for x in out.splitlines() if "core_load" in x)
    assert "FAILED" in line and "cloud has type number" in line and "declares number-list" in line
    assert "--replace-changed-types" in line
    assert "Bootstrap incomplete: 3 created; 1 failed" in out
    assert iot.describe_custom_metric(metricName="core_load")["metricType"] == "number"


def test_replace_changed_types_recreates_unless_a_profile_uses_it(emulator, store, iot, cli, write_config):
    store.create_metric("core_load", "number", None, (), "someone-else")
    store.put_security_profile("edge-profile", ["core_load"])
    code, out, _ = run_bootstrap(cli, write_config(), emulator, "--replace-changed-types")
    assert code == 1
    assert "security profile(s) edge-profile use the metric" in out
    assert iot.describe_custom_metric(metricName="core_load")["metricType"] == "number"

    store.delete_security_profile("edge-profile")
    code, out, _ = run_bootstrap(cli, write_config(), emulator, "--replace-changed-types")
    assert code == 0, out
    assert "replace    core_load: type number -> number-list" in out
    assert iot.describe_custom_metric(metricName="core_load")["metricType"] == "number-list"


def test_dry_run_prints_the_plan_and_changes_nothing(emulator, store, iot, cli, write_config) -> None:
    store.create_metric("cpu_usage", "number", "Old name", (), "t")
    store.create_metric("core_load", "number", None, (), "t")
    store.create_metric("services", "string-list", None, (), "t")
    store.create_metric("retired", "number", None, (), "t")
    code, out, _ = run_bootstrap(cli, write_config(), emulator, "--dry-run", "--prune")
    assert code == 1  # the type conflict is reported
    plan = [line.split()[:2] for line in out.splitlines()[1:]]
    assert plan == [
        ["update", "cpu_usage:"],
        ["conflict", "core_load:"],
        ["unchanged", "services:"],
        ["create", "peers:"],
        ["delete", "retired:"],
    ]
    assert "dry run, nothing changed" in out
    assert names_in_cloud(iot) == ["core_load", "cpu_usage", "retired", "services"]
    assert iot.describe_custom_metric(metricName="cpu_usage")["displayName"] == "Old name"
    writes = {"CreateCustomMetric", "UpdateCustomMetric", "DeleteCustomMetric"}
    assert not [op for op, _ in emulator.calls() if op in writes]


def test_prune_only_when_asked_and_never_a_metric_in_use(emulator, store, iot, cli, write_config) -> None:
    store.create_metric("retired", "number", None, (), "t")
    store.create_metric("guarded", "number", None, (), "t")
    store.put_security_profile("fleet", ["guarded"])
    assert run_bootstrap(cli, write_config(), emulator)[0] == 0
    assert {"retired", "guarded"} <= set(names_in_cloud(iot))

    code, out, _ = run_bootstrap(cli, write_config(), emulator, "--prune")
    assert code == 1
    assert "delete     retired: not declared in this config (deleted (no longer declared))" in out
    assert "guarded: not deleted: used by security profile(s) fleet" in out
    assert names_in_cloud(iot) == ["core_load", "cpu_usage", "guarded", "peers", "services"]


def test_throttling_on_the_first_try_is_retried(emulator, iot, cli, write_config) -> None:
    emulator.inject_errors(1, "ThrottlingException", operation="CreateCustomMetric")
    code, out, err = run_bootstrap(cli, write_config(), emulator)
    assert code == 0, out
    creates = emulator.calls("CreateCustomMetric")
    assert creates[0] == ("CreateCustomMetric", 400)  # throttled, then retried
    assert len([c for c in creates if c[1] == 200]) == 4
    assert "ThrottlingException, retrying in" in err
    assert len(names_in_cloud(iot)) == 4


def test_persistent_throttling_gives_up_with_one_line_per_metric(emulator, iot) -> None:
    sleeps: List[float] = []
    policy = RetryPolicy(attempts=3, sleep=sleeps.append)
    emulator.inject_errors(3, "ThrottlingException", operation="CreateCustomMetric")
    want = [bs.Definition("cpu_usage", "number"), bs.Definition("mem_free", "number")]
    steps = bs.plan(want, bs.gather(iot, want, policy))
    outcomes = bs.execute(iot, steps, policy)
    assert [o.ok for o in outcomes] == [False, True]
    assert outcomes[0].message.startswith("create cpu_usage: AWS IoT kept throttling the request")
    assert "\n" not in outcomes[0].message
    assert len(sleeps) == 2 and all(0 <= s <= 0.5 for s in sleeps)
    assert plan_text.summary(outcomes) == ("1 created; 1 failed", False)


def test_internal_failure_is_retried(emulator, iot) -> None:
    sleeps: List[float] = []
    emulator.inject_errors(2, "InternalFailureException", operation="DescribeCustomMetric")
    want = [bs.Definition("cpu_usage", "number")]
    state = bs.gather(iot, want, RetryPolicy(sleep=sleeps.append))
    assert state.current == {"cpu_usage": None} and not state.errors
    assert len(sleeps) == 2


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("LimitExceededException", "create cpu_usage: an account limit is reached"),
        ("InvalidRequestException", "create cpu_usage: the service refused the request as invalid"),
        ("ResourceAlreadyExistsException", "create cpu_usage: it already exists with a different definition"),
    ],
)
def test_service_errors_become_one_line_messages(emulator, cli, write_config, code, expected) -> None:
    emulator.inject_errors(1, code, operation="CreateCustomMetric")
    config = write_config("custom_metrics:\n  cpu_usage: number\n")
    rc, out, _ = run_bootstrap(cli, config, emulator)
    assert rc == 1
    failed = [line for line in out.splitlines() if "FAILED" in line]
    assert len(failed) == 1 and expected in failed[0] and f"({code}: " in failed[0]


def test_a_retried_create_with_the_same_token_is_recognised(emulator, iot) -> None:
    want = bs.Definition("cpu_usage", "number", "CPU", (("team", "edge"),))
    token = bs.request_token(want)
    assert token == bs.request_token(bs.Definition("cpu_usage", "number", "CPU", (("team", "edge"),)))
    assert token != bs.request_token(bs.Definition("cpu_usage", "number", "CPU!", (("team", "edge"),)))
    assert 1 <= len(token) <= 64 and token.replace("-", "").replace("_", "").isalnum()
    first = iot.create_custom_metric(metricName="cpu_usage", metricType="number", clientRequestToken=token)
    again = iot.create_custom_metric(metricName="cpu_usage", metricType="number", clientRequestToken=token)
    assert first["metricArn"] == again["metricArn"]
    with pytest.raises(iot.exceptions.ResourceAlreadyExistsException):
        iot.create_custom_metric(metricName="cpu_usage", metricType="number", clientRequestToken="other")


def test_missing_credentials_give_one_clear_line(emulator, cli, write_config, monkeypatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    code, out, err = run_bootstrap(cli, write_config(), emulator)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("defender-agent: no AWS credentials found: set AWS_ACCESS_KEY_ID")
    assert emulator.calls() == []


def test_missing_region_gives_one_clear_line(emulator, cli, write_config, monkeypatch) -> None:
    monkeypatch.delenv("AWS_REGION")
    code, _, err = run_bootstrap(cli, write_config(), emulator)
    assert code == 1 and err.count("\n") == 1
    assert err.startswith("defender-agent: no AWS region set: pass --region")


def test_unknown_profile_and_unreachable_endpoint(cli, write_config) -> None:
    code, _, err = cli("bootstrap", "--config", write_config(), "--profile", "nope")
    assert (
        code == 1
        and err == "defender-agent: AWS profile 'nope' is not in ~/.aws/config or ~/.aws/credentials\n"
    )
    code, _, err = cli("bootstrap", "--config", write_config(), "--endpoint-url", "http://127.0.0.1:9")
    assert code == 1 and err.count("\n") == 1 and "cannot reach AWS IoT" in err


def test_config_errors_exit_78(cli, tmp_path) -> None:
    code, _, err = cli("bootstrap", "--config", str(tmp_path / "missing.yaml"))
    assert code == 78 and "file not found" in err


# -- the plan as a pure function ----------------------------------------------------


def test_plan_covers_every_case() -> None:
    D = bs.Definition
    desired = [
        D("a", "number", "A"),
        D("b", "number", "B"),
        D("c", "number"),
        D("d", "string-list"),
        D("e", "number"),
    ]
    state = bs.CloudState(
        current={
            "a": None,
            "b": D("b", "number", "old"),
            "c": D("c", "number", "kept"),
            "d": D("d", "number"),
        },
        cloud_names=["b", "c", "d", "x", "y"],
        used_by={"y": ["p1"]},
        errors={"e": "describe e: access denied"},
    )
    steps = bs.plan(desired, state, prune=True)
    assert [(s.name, s.action.value) for s in steps] == [
        ("a", "create"),
        ("b", "update"),
        ("c", "unchanged"),
        ("d", "conflict"),
        ("e", "failed"),
        ("x", "delete"),
        ("y", "blocked"),
    ]
    assert [
        s.name for s in bs.plan(desired, state) if s.action is bs.Action.DELETE
    ] == []  # no prune by default
    assert bs.plan([D("d", "string-list")], state, replace_changed_types=True)[0].action is bs.Action.REPLACE


def test_units_of_built_in_metrics_reach_the_plan(emulator, store, cli, write_config) -> None:
    """A metric fed by the system or disk collector gets the catalog's unit; one the config describes keeps its own."""
    store.create_metric("load", "number-list", None, (), "t")
    config = write_config("""\
        custom_metrics:
          cpu: number
          load: number-list
          root_free: number
          own: {type: number, unit: widgets}
        collectors:
          - {type: system, metrics: {cpu_usage: cpu, load_average: load}}
          - {type: disk, mounts: {/: root_free}, value: free_bytes}
          - {type: file, path: /nonexistent, metric: own, metric_type: number}
        """)
    code, out, err = run_bootstrap(cli, config, emulator, "--dry-run")
    assert code == 0, err
    lines = {line.split()[1]: line for line in out.splitlines()[1:] if len(line.split()) > 1}
    assert lines["cpu:"].endswith("cpu: number in percent")
    assert lines["load:"].endswith("load: number-list in processes")  # unchanged in the cloud, unit still shown
    assert lines["root_free:"].endswith("root_free: number in bytes")
    assert lines["own:"].endswith("own: number in widgets")


def test_without_a_defender_sink_bootstrap_says_it_is_not_needed_and_calls_nothing(emulator, cli,
                                                                                  write_config) -> None:
    config = write_config(METRICS_WITH_TOPIC_SINK)
    code, out, err = run_bootstrap(cli, config, emulator)
    assert code == 0, err
    assert "no defender sink, so custom metric definitions are not needed" in out
    assert emulator.calls() == []


def test_health_metrics_are_registered_with_the_catalog_types(emulator, iot, cli, write_config) -> None:
    code, _, err = run_bootstrap(cli, write_config("health_metrics: custom_metrics\n"), emulator)
    assert code == 0, err
    assert iot.describe_custom_metric(metricName="agent_failing_collectors")["metricType"] == "string-list"
    assert iot.describe_custom_metric(metricName="agent_outbox_pending")["metricType"] == "number"


METRICS_WITH_TOPIC_SINK = """\
custom_metrics: {cpu_usage: number}
sinks:
  - {type: topic, topic: 'dt/{thing_name}'}
"""
