"""`defender-agent behaviors pull` against the local control plane: YAML that loads, cloud-only behaviors
commented out with their reason, the profile list, clear errors; and the AWS CLI on the same emulator."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest
import yaml

from agent.behaviors.check import check_behaviors
from agent.catalog import MetricType
from agent.schema import Checker
from devkit.emulator.controlplane import ControlPlaneServer
from tests.control.conftest import REGION

ROOT = Path(__file__).resolve().parents[2]

PORTS = {"name": "listening-tcp", "metric": "aws:listening-tcp-ports",
         "criteria": {"comparisonOperator": "in-port-set", "value": {"ports": [22, 443, 8883]}}}
# The developer guide's "Device-side metrics" examples for aws:all-bytes-out (named to fit BehaviorName).
BYTES_OUT = {"name": "tcp-outbound", "metric": "aws:all-bytes-out", "criteria": {
    "comparisonOperator": "less-than-equals", "value": {"count": 4096}, "durationSeconds": 300,
    "consecutiveDatapointsToAlarm": 1, "consecutiveDatapointsToClear": 1}, "suppressAlerts": True}
BYTES_OUT_P50 = {"name": "tcp-outbound-p50", "metric": "aws:all-bytes-out", "criteria": {
    "comparisonOperator": "less-than-equals", "statisticalThreshold": {"statistic": "p50"}, "durationSeconds": 900,
    "consecutiveDatapointsToAlarm": 1, "consecutiveDatapointsToClear": 1}, "suppressAlerts": True}
AUTH_FAILURES = {"name": "authorization-failures", "metric": "aws:num-authorization-failures",
                 "criteria": {"comparisonOperator": "less-than", "value": {"count": 5}, "durationSeconds": 300}}
CPU = {"name": "cpu-high", "metric": "cpu_usage",
       "criteria": {"comparisonOperator": "less-than", "value": {"number": 90.5},
                    "consecutiveDatapointsToAlarm": 2}}
BEHAVIORS = [PORTS, BYTES_OUT_P50, BYTES_OUT, AUTH_FAILURES, CPU]
RUNNABLE = [PORTS, BYTES_OUT, CPU]
ENV = {"AWS_ACCESS_KEY_ID": "AKIDEMULATOR", "AWS_SECRET_ACCESS_KEY": "emulator-secret", "AWS_DEFAULT_REGION": REGION}


@pytest.fixture
def fleet(iot: Any) -> Any:
    iot.create_custom_metric(metricName="cpu_usage", metricType="number", clientRequestToken="t")
    iot.create_security_profile(securityProfileName="fleet", securityProfileDescription="Gateways",
                                behaviors=BEHAVIORS)
    return iot


def commented_items(text: str) -> List[Dict[str, Any]]:
    """The behaviors written as comments, parsed back (each starts at a commented ``- name:``)."""
    blocks: List[List[str]] = []
    for line in text.splitlines():
        if line.startswith("  # - "):
            blocks.append([line[len("  # "):]])
        elif line.startswith("  #   ") and blocks:
            blocks[-1].append(line[len("  # "):])
    return [yaml.safe_load("\n".join(block))[0] for block in blocks]


def agent(*args: str, env: Dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True, timeout=120,
                          cwd=str(ROOT), env=env, check=False)


def subprocess_env(tmp_path: Path) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(ENV, AWS_CONFIG_FILE=str(tmp_path / "none"), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"))
    return env


def test_pull_writes_yaml_that_loads_with_cloud_only_behaviors_commented(
    fleet: Any, emulator: ControlPlaneServer, cli: Any, tmp_path: Path
) -> None:
    out = tmp_path / "behaviors.yaml"
    code, stdout, stderr = cli("behaviors", "pull", "--security-profile", "fleet", "--endpoint-url", emulator.url,
                               "--output", str(out))
    assert code == 0, stderr
    assert stdout == ""
    text = out.read_text(encoding="utf-8")
    loaded = yaml.safe_load(text)
    assert loaded == {"behaviors": RUNNABLE}
    checker = Checker(str(out))
    checked = check_behaviors(loaded["behaviors"], "behaviors", checker, {"cpu_usage": MetricType.NUMBER})
    assert checker.problems == [] and [b.name for b in checked] == ["listening-tcp", "tcp-outbound", "cpu-high"]
    assert commented_items(text) == [BYTES_OUT_P50, AUTH_FAILURES]
    lines = text.splitlines()
    assert lines[0] == ("# Behaviors of security profile fleet "
                        "(ARN arn:aws:iot:local:123456789012:securityprofile/fleet, version 1)")
    assert lines[1].startswith("# pulled 20") and "2 of 5 behavior(s)" in text
    statistical = lines.index("  # - name: tcp-outbound-p50") - 1
    assert lines[statistical].startswith("  # Not evaluated on the device: statisticalThreshold")
    cloud = lines.index("  # - name: authorization-failures") - 1
    assert lines[cloud].startswith("  # Not evaluated on the device: aws:num-authorization-failures is a cloud-side")
    assert "Behavior 'tcp-outbound-p50' cannot be evaluated on the device" in stderr
    assert "Behavior 'authorization-failures' cannot be evaluated on the device" in stderr
    assert "3 evaluated on the device, 2 commented out" in stderr


def test_pull_prints_to_stdout_by_default(fleet: Any, emulator: ControlPlaneServer, cli: Any) -> None:
    code, stdout, _ = cli("behaviors", "pull", "--security-profile", "fleet", "--endpoint-url", emulator.url)
    assert code == 0
    assert yaml.safe_load(stdout) == {"behaviors": RUNNABLE}


def test_a_profile_with_nothing_for_the_device_still_loads(iot: Any, emulator: ControlPlaneServer, cli: Any) -> None:
    iot.create_security_profile(securityProfileName="cloud-only", behaviors=[BYTES_OUT_P50, AUTH_FAILURES])
    code, stdout, _ = cli("behaviors", "pull", "--security-profile", "cloud-only", "--endpoint-url", emulator.url)
    assert code == 0
    assert yaml.safe_load(stdout) == {"behaviors": []}
    assert commented_items(stdout) == [BYTES_OUT_P50, AUTH_FAILURES]


def test_without_a_profile_it_lists_them_all_and_says_how_to_pick(
    iot: Any, emulator: ControlPlaneServer, cli: Any
) -> None:
    for name in ("a-profile", "b-profile", "c-profile"):  # two pages at the emulator's page size of 2
        iot.create_security_profile(securityProfileName=name, behaviors=[PORTS])
    code, stdout, stderr = cli("behaviors", "pull", "--endpoint-url", emulator.url)
    assert code == 2
    assert stdout.split() == ["a-profile", "b-profile", "c-profile"]
    assert "pick one with --security-profile NAME" in stderr
    assert len(emulator.calls("ListSecurityProfiles")) == 2


def test_no_profiles_at_all(emulator: ControlPlaneServer, cli: Any, aws_env: None) -> None:
    code, stdout, stderr = cli("behaviors", "pull", "--endpoint-url", emulator.url)
    assert (code, stdout) == (2, "") and "No security profiles" in stderr


def test_throttling_is_retried(fleet: Any, emulator: ControlPlaneServer, cli: Any) -> None:
    emulator.inject_errors(2, operation="DescribeSecurityProfile")
    emulator.inject_errors(1, operation="ListSecurityProfiles")
    code, stdout, _ = cli("behaviors", "pull", "--security-profile", "fleet", "--endpoint-url", emulator.url)
    assert code == 0 and yaml.safe_load(stdout) == {"behaviors": RUNNABLE}
    assert [s for _, s in emulator.calls("DescribeSecurityProfile")] == [400, 400, 200]
    code, stdout, _ = cli("behaviors", "pull", "--endpoint-url", emulator.url)
    assert code == 2 and stdout.split() == ["fleet"]
    assert [s for _, s in emulator.calls("ListSecurityProfiles")] == [400, 200]


def test_a_missing_profile_is_one_clear_line(emulator: ControlPlaneServer, tmp_path: Path) -> None:
    done = agent("behaviors", "pull", "--security-profile", "nope", "--endpoint-url", emulator.url,
                 env=subprocess_env(tmp_path))
    assert done.returncode == 1
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "defender-agent: security profile 'nope': it does not exist (ResourceNotFoundException: Security profile "
        "nope does not exist); `defender-agent behaviors pull` without --security-profile lists the profiles"
    ]


def test_an_unreachable_endpoint_is_one_clear_line(tmp_path: Path) -> None:
    done = agent("behaviors", "pull", "--security-profile", "fleet", "--endpoint-url", "http://127.0.0.1:9",
                 env=subprocess_env(tmp_path))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("defender-agent: cannot reach AWS IoT")


@pytest.mark.skipif(shutil.which("aws") is None, reason="the AWS CLI is not installed")
def test_the_aws_cli_reads_and_validates_on_the_emulator(fleet: Any, emulator: ControlPlaneServer,
                                                         tmp_path: Path) -> None:
    env = subprocess_env(tmp_path)

    def aws(*args: str) -> Any:
        done = subprocess.run(["aws", "iot", *args, "--endpoint-url", emulator.url, "--output", "json"],
                              capture_output=True, text=True, timeout=120, env=env, check=False)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    described = aws("describe-security-profile", "--security-profile-name", "fleet")
    assert described["behaviors"] == BEHAVIORS and described["version"] == 1
    listed = aws("list-security-profiles")  # the CLI follows nextToken itself
    assert [p["name"] for p in listed["securityProfileIdentifiers"]] == ["fleet"]
    behaviors = tmp_path / "behaviors.json"
    behaviors.write_text(json.dumps(RUNNABLE))
    assert aws("validate-security-profile-behaviors", "--behaviors", f"file://{behaviors}") == {
        "valid": True, "validationErrors": []}
    broken = [dict(PORTS, criteria={"comparisonOperator": "less-than", "value": {"ports": [22]}})]
    behaviors.write_text(json.dumps(broken))
    answer = aws("validate-security-profile-behaviors", "--behaviors", f"file://{behaviors}")
    assert answer["valid"] is False
    assert answer["validationErrors"][0]["errorMessage"].startswith("behaviors[0].criteria.comparisonOperator")


@pytest.mark.skipif(shutil.which("aws") is None, reason="the AWS CLI is not installed")
def test_behaviors_pasted_from_the_aws_cli_run_or_are_refused_with_a_reason_each(
        fleet: Any, emulator: ControlPlaneServer, tmp_path: Path) -> None:
    """`aws iot describe-security-profile` prints JSON; its behaviors list pasted as is (YAML reads JSON)."""
    env = subprocess_env(tmp_path)
    done = subprocess.run(["aws", "iot", "describe-security-profile", "--security-profile-name", "fleet",
                           "--endpoint-url", emulator.url, "--output", "json"],
                          capture_output=True, text=True, timeout=120, env=env, check=False)
    assert done.returncode == 0, done.stderr
    pasted = json.dumps(json.loads(done.stdout)["behaviors"], indent=2)
    config = tmp_path / "agent.yaml"
    head = (f"thing_name: gw-1\nstate_dir: {tmp_path / 'state'}\nsinks: [{{type: textfile, path: {tmp_path / 'a.prom'}}}]\n"
            "custom_metrics: {cpu_usage: number}\n")
    config.write_text(head + "behaviors: " + pasted + "\n")
    config.chmod(0o600)
    refused = agent("check", "--config", str(config), env=env)
    assert refused.returncode == 78 and "Traceback" not in refused.stderr
    problems = [line.strip() for line in refused.stderr.splitlines()[1:] if line.strip()]
    assert len(problems) == 2, problems  # one per behavior the device cannot run, each with its reason
    assert any("behaviors[1].criteria.statisticalThreshold" in p and "percentile" in p for p in problems)
    assert any("behaviors[3].metric" in p and "cloud-side" in p for p in problems)
    runnable = [b for b in json.loads(done.stdout)["behaviors"] if b["name"] in {x["name"] for x in RUNNABLE}]
    config.write_text(head + "behaviors: " + json.dumps(runnable, indent=2) + "\n")
    accepted = agent("check", "--config", str(config), env=env)
    assert accepted.returncode == 0, accepted.stderr
    assert "3 behavior(s)" in accepted.stdout
