"""An AWS account without Device Defender Detect: what the control plane answers, and the one line each command
prints about it.

Since 2026-08-31 every Detect API of such an account answers HTTP 401, ``x-amzn-ErrorType:
UnauthorizedException`` and "This feature is no longer available to new customers. For more information,
see https://docs.aws.amazon.com/iot-device-defender/latest/devguide/dd-detect-availability-change.html"
(../shared/SPEC.md). The emulator answers so with ``detect_available=False`` (``--no-detect``); boto3 and the
AWS CLI read it as they read AWS. ``bootstrap``, ``values`` and ``behaviors pull`` then print one line (not one
per metric) saying what it means and what works without Detect, exit 1, no traceback; a real missing
permission keeps its own message and names the action.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Tuple

import pytest

from devkit.emulator.apimodel import ServiceModel
from devkit.emulator.controlplane import DETECT_CLOSED_MESSAGE, ControlPlaneServer
from devkit.emulator.store import Store
from tests.control.conftest import lines

AWS_CLI = Path(sys.executable).with_name("aws")  # the dev extra's awscli, beside the venv's python

# One request per Detect operation the emulator serves (method, path, body), as boto3 would send it.
REQUESTS: Dict[str, Tuple[str, str, Dict[str, Any]]] = {
    "CreateCustomMetric": ("POST", "/custom-metric/cpu_usage", {"metricType": "number", "clientRequestToken": "t"}),
    "DescribeCustomMetric": ("GET", "/custom-metric/cpu_usage", {}),
    "UpdateCustomMetric": ("PATCH", "/custom-metric/cpu_usage", {"displayName": "CPU"}),
    "DeleteCustomMetric": ("DELETE", "/custom-metric/cpu_usage", {}),
    "ListCustomMetrics": ("GET", "/custom-metrics", {}),
    "ListMetricValues": ("GET", "/metric-values?thingName=gw-1&metricName=cpu_usage&startTime=2026-12-01T00:00:00Z"
                                "&endTime=2026-12-02T00:00:00Z", {}),
    "ListSecurityProfiles": ("GET", "/security-profiles", {}),
    "CreateSecurityProfile": ("POST", "/security-profiles/fleet", {"behaviors": []}),
    "DescribeSecurityProfile": ("GET", "/security-profiles/fleet", {}),
    "DeleteSecurityProfile": ("DELETE", "/security-profiles/fleet", {}),
    "ValidateSecurityProfileBehaviors": ("POST", "/security-profile-behaviors/validate", {"behaviors": []}),
}

BOOTSTRAP_LINE = (
    "defender-agent: this AWS account cannot register Device Defender Detect custom metrics: AWS closed Detect to "
    "new customers on 2026-08-31 and no permission changes that. Without Detect, the topic and textfile sinks and "
    "on-device behaviors work, and a config without a defender sink needs no bootstrap (docs/WITHOUT-DETECT.md). "
    f"AWS said: UnauthorizedException: {DETECT_CLOSED_MESSAGE}"
)


@pytest.fixture
def closed(service_model: ServiceModel) -> Iterator[ControlPlaneServer]:
    """The control plane of an account opened after Detect closed."""
    server = ControlPlaneServer(Store(), port=0, model=service_model, detect_available=False).start()
    try:
        yield server
    finally:
        server.stop()


def test_the_emulator_routes_every_detect_operation_it_serves() -> None:
    from devkit.emulator.controlplane import _OPERATIONS

    assert set(REQUESTS) == set(_OPERATIONS)


@pytest.mark.parametrize("operation", sorted(REQUESTS))
def test_every_detect_api_answers_as_aws_does_for_a_new_account(closed: ControlPlaneServer, operation: str) -> None:
    method, path, body = REQUESTS[operation]
    request = urllib.request.Request(closed.url + path, data=json.dumps(body).encode() if body else None,
                                     method=method, headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 401
    assert refused.value.headers["x-amzn-ErrorType"] == "UnauthorizedException"
    assert json.loads(refused.value.read()) == {"message": DETECT_CLOSED_MESSAGE}
    assert closed.calls(operation) == [(operation, 401)]


def test_boto3_raises_its_modelled_exception_with_aws_words(aws_env: None, closed: ControlPlaneServer) -> None:
    from agent.control.aws import AwsSettings, make_client

    iot = make_client(AwsSettings(endpoint_url=closed.url))
    for call in (iot.list_security_profiles, lambda: iot.describe_custom_metric(metricName="cpu_usage"),
                 lambda: iot.create_custom_metric(metricName="cpu_usage", metricType="number",
                                                  clientRequestToken="t")):
        with pytest.raises(iot.exceptions.UnauthorizedException) as refused:
            call()
        response = refused.value.response
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 401
        assert response["Error"] == {"Code": "UnauthorizedException", "Message": DETECT_CLOSED_MESSAGE}


def test_the_aws_cli_prints_what_a_new_account_sees(closed: ControlPlaneServer, tmp_path: Path) -> None:
    assert AWS_CLI.exists(), "the dev extra installs awscli beside the venv's python"
    done = subprocess.run([str(AWS_CLI), "iot", "list-security-profiles", "--endpoint-url", closed.url],
                          capture_output=True, text=True, timeout=120, env=_env(tmp_path), check=False)
    assert done.returncode in (254, 255), done.stderr  # a service error: 255 on AWS CLI v1 (PyPI's), 254 on v2
    assert done.stderr.strip() == (
        "An error occurred (UnauthorizedException) when calling the ListSecurityProfiles operation: "
        + DETECT_CLOSED_MESSAGE)


def test_bootstrap_says_it_once_for_all_metrics(closed: ControlPlaneServer, aws_env: None,
                                                 write_config: Callable[..., str], cli: Any) -> None:
    config = write_config()  # four custom metrics and a defender sink (the default)
    code, out, err = cli("bootstrap", "--config", config, "--endpoint-url", closed.url)
    assert code == 1
    assert out == ""  # no per-metric FAILED lines, no summary
    assert lines(err) == [BOOTSTRAP_LINE]
    assert [op for op, _ in closed.calls()] == ["DescribeCustomMetric"]  # it stops at the first answer


def test_bootstrap_dry_run_says_the_same(closed: ControlPlaneServer, aws_env: None,
                                         write_config: Callable[..., str], cli: Any) -> None:
    code, out, err = cli("bootstrap", "--config", write_config(), "--dry-run", "--endpoint-url", closed.url)
    assert (code, out, lines(err)) == (1, "", [BOOTSTRAP_LINE])


def test_values_says_it_in_one_line(closed: ControlPlaneServer, aws_env: None, cli: Any) -> None:
    code, out, err = cli("values", "--thing", "gw-1", "--metric", "cpu_usage", "--endpoint-url", closed.url)
    assert code == 1 and out == ""
    assert lines(err) == [BOOTSTRAP_LINE.replace(
        "cannot register Device Defender Detect custom metrics",
        "has no Device Defender Detect to read metric values from")]


@pytest.mark.parametrize("args", [(), ("--security-profile", "fleet")], ids=["list", "one"])
def test_behaviors_pull_says_it_in_one_line(closed: ControlPlaneServer, aws_env: None, cli: Any,
                                            args: Tuple[str, ...]) -> None:
    code, out, err = cli("behaviors", "pull", *args, "--endpoint-url", closed.url)
    assert code == 1 and out == ""
    assert lines(err) == [BOOTSTRAP_LINE.replace(
        "cannot register Device Defender Detect custom metrics",
        "has no Device Defender Detect security profiles to pull")]


def test_the_commands_print_no_traceback_as_processes(closed: ControlPlaneServer, tmp_path: Path,
                                                      write_config: Callable[..., str]) -> None:
    config = write_config()
    for argv in (["bootstrap", "--config", config], ["values", "--thing", "gw-1", "--metric", "cpu_usage"],
                 ["behaviors", "pull"]):
        done = subprocess.run([sys.executable, "-m", "agent", *argv, "--endpoint-url", closed.url],
                              capture_output=True, text=True, timeout=120, env=_env(tmp_path), check=False)
        assert done.returncode == 1, done.stderr
        assert "Traceback" not in done.stderr and len(lines(done.stderr)) == 1, done.stderr
        assert "docs/WITHOUT-DETECT.md" in done.stderr and "no longer available to new customers" in done.stderr


def test_a_missing_permission_keeps_its_own_message_and_names_the_action(
        emulator: ControlPlaneServer, aws_env: None, write_config: Callable[..., str], cli: Any) -> None:
    emulator.inject_errors(4, "AccessDeniedException")
    code, out, err = cli("bootstrap", "--config", write_config(), "--endpoint-url", emulator.url)
    assert code == 1
    failed = [line for line in lines(out) if "FAILED" in line]
    assert len(failed) == 4  # a permission may differ per metric: each says its own
    assert "access denied; the IAM identity lacks the iot:DescribeCustomMetric permission (AccessDeniedException: " \
           "User: arn:aws:iam::123456789012:user/operator is not authorized to perform: iot:DescribeCustomMetric" \
           in failed[0]
    assert "Detect" not in out + err


def test_another_unauthorized_answer_is_not_taken_for_the_closure(
        emulator: ControlPlaneServer, aws_env: None, cli: Any) -> None:
    emulator.inject_errors(1, "UnauthorizedException")
    code, _, err = cli("behaviors", "pull", "--endpoint-url", emulator.url)
    assert code == 1
    assert lines(err) == ["defender-agent: list security profiles: not authorized; check that the IAM identity may "
                          "call iot:ListSecurityProfiles (UnauthorizedException: Injected by the emulator)"]


def _env(tmp_path: Path) -> Dict[str, str]:
    import os

    env: Dict[str, str] = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID="AKIDEMULATOR", AWS_SECRET_ACCESS_KEY="emulator-secret", AWS_REGION="eu-west-1",
               AWS_DEFAULT_REGION="eu-west-1", AWS_CONFIG_FILE=str(tmp_path / "none"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"), AWS_EC2_METADATA_DISABLED="true",
               AWS_PAGER="")
    return env
