"""Shared fixtures of the emulator tests: the control plane on a loopback port and a real boto3 client of it."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any, Dict, Iterator, Optional, Tuple

import boto3
import pytest

from devkit.emulator.apimodel import ServiceModel
from devkit.emulator.controlplane import ControlPlaneServer
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
