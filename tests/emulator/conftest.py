"""Shared fixtures of the emulator tests: the control plane and the shadow data plane on loopback ports, real
boto3 clients of them, the responder serving shadows on the test broker, and the AWS CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple

import boto3
import pytest

from devkit.broker import Broker
from devkit.certs import Pki
from devkit.demo import DEMO_AWS_ENV
from devkit.emulator.apimodel import ServiceModel
from devkit.emulator.controlplane import ControlPlaneServer
from devkit.emulator.dataplane import DataPlaneServer
from devkit.emulator.responder import Responder, ResponderOptions
from devkit.emulator.shadow import ShadowStore
from devkit.emulator.store import Store
from tests.delivery.conftest import broker, pki, responder  # noqa: F401  (shared fixtures)


@pytest.fixture(scope="module")
def model() -> ServiceModel:
    return ServiceModel()


@pytest.fixture
def server(model: ServiceModel) -> Iterator[ControlPlaneServer]:
    with ControlPlaneServer(Store(), model=model) as srv:
        yield srv


@pytest.fixture
def iot(server: ControlPlaneServer, monkeypatch: pytest.MonkeyPatch, tmp_path) -> Any:
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    # botocore's own retries are left on here (legacy mode, the default) to show that they exist.
    return boto3.client(
        "iot",
        endpoint_url=server.url,
        region_name="eu-west-1",
        aws_access_key_id="AKIDEMULATOR",
        aws_secret_access_key="secret",
    )


def raw(
    server: ControlPlaneServer, method: str, path: str, body: Optional[Dict[str, Any]] = None
) -> Tuple[int, Dict[str, str], Dict[str, Any]]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(server.url + path, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())


# -- the shadow service: store, MQTT side (responder), HTTP data plane, a device, the AWS CLI ------------------
# Reusable: import them into another conftest as this one imports tests.delivery.conftest's fixtures.

AWS_CLI = Path(sys.executable).with_name("aws")  # the venv's AWS CLI (awscli, in the dev extra)


@pytest.fixture(scope="session")
def iot_data_model() -> ServiceModel:
    return ServiceModel("iot-data")


@pytest.fixture
def shadows() -> ShadowStore:
    return ShadowStore()


@pytest.fixture
def shadow_responder(pki: Pki, broker: Broker, shadows: ShadowStore) -> Iterator[Responder]:  # noqa: F811
    """The responder on the test broker, also serving the shadow topics from ``shadows``."""
    pair = pki.client("defender-emulator")
    r = Responder(ResponderOptions("127.0.0.1", broker.port, str(pair.cert), str(pair.key), str(pki.ca),
                                   client_id=f"shadow-emulator-{os.getpid()}", shadows=shadows))
    r.start()
    yield r
    r.stop()


@pytest.fixture
def data_plane(shadows: ShadowStore, iot_data_model: ServiceModel) -> Iterator[DataPlaneServer]:
    """The HTTP data plane on ``shadows`` alone: nothing is published (no broker needed)."""
    with DataPlaneServer(shadows, model=iot_data_model, page_size=2) as srv:
        yield srv


@pytest.fixture
def linked_data_plane(shadows: ShadowStore, shadow_responder: Responder,
                      iot_data_model: ServiceModel) -> Iterator[DataPlaneServer]:
    """The data plane whose updates reach MQTT subscribers through ``shadow_responder`` (as in AWS)."""
    with DataPlaneServer(shadows, publish=shadow_responder.publish_json, model=iot_data_model) as srv:
        yield srv


def aws_env(tmp_path: Path) -> Dict[str, str]:
    """The environment for boto3 or the AWS CLI against the emulator: dummy credentials, no credentials file,
    and a config file that sets ``cli_binary_format = raw-in-base64-out``. The venv's CLI is v1 (the one on
    PyPI), which takes ``--payload`` raw and refuses v2's ``--cli-binary-format`` flag; v2 obeys the setting,
    so the same ``aws iot-data update-thing-shadow --payload '{...}'`` works with either."""
    config = tmp_path / "aws-config"
    config.write_text("[default]\ncli_binary_format = raw-in-base64-out\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(DEMO_AWS_ENV)
    env.update(AWS_CONFIG_FILE=str(config), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"), AWS_PAGER="")
    return env


def iot_data_client(url: str) -> Any:
    return boto3.client("iot-data", endpoint_url=url, region_name="eu-west-1",
                        aws_access_key_id="AKIDEMULATOR", aws_secret_access_key="secret")


@pytest.fixture
def iot_data(data_plane: DataPlaneServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """A real boto3 ``iot-data`` client of :func:`data_plane`."""
    for name, value in aws_env(tmp_path).items():
        monkeypatch.setenv(name, value)
    for name in [n for n in os.environ if n.startswith("AWS_") and n not in aws_env(tmp_path)]:
        monkeypatch.delenv(name)
    return iot_data_client(data_plane.url)


def run_aws(url: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``aws iot-data ARGS --endpoint-url URL`` (the real CLI, in a subprocess)."""
    return subprocess.run([str(AWS_CLI), "iot-data", *args, "--endpoint-url", url], capture_output=True,
                          text=True, env=aws_env(tmp_path), timeout=60, check=False)
