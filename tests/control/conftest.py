"""Fixtures for control-plane tests: dummy AWS settings, a local emulator, a config file, the CLI."""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path
from typing import Callable, Iterator, List, Tuple

import pytest

from agent import cli as agent_cli
from devkit.emulator.apimodel import ServiceModel
from devkit.emulator.controlplane import ControlPlaneServer
from devkit.emulator.store import Store

REGION = "eu-west-1"


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Dummy credentials and a region from the environment; nothing from the real ~/.aws."""
    import os

    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEMULATOR")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "emulator-secret")
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def store() -> Store:
    return Store()


@pytest.fixture(scope="session")
def service_model() -> ServiceModel:
    return ServiceModel()


@pytest.fixture
def emulator(store: Store, service_model: ServiceModel) -> Iterator[ControlPlaneServer]:
    server = ControlPlaneServer(store, host="127.0.0.1", port=0, model=service_model).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def iot(aws_env: None, emulator: ControlPlaneServer):  # type: ignore[no-untyped-def]
    """A real boto3 IoT client talking HTTP to the emulator (botocore retries off, like the agent's)."""
    from agent.control.aws import AwsSettings, make_client

    return make_client(AwsSettings(endpoint_url=emulator.url))


CONFIG_HEAD = """\
thing_name: gw-1
mqtt:
  endpoint: 127.0.0.1
  cert: /nonexistent/device.crt
  key: /nonexistent/device.key
  ca: /nonexistent/ca.pem
"""

METRICS = """\
custom_metrics:
  cpu_usage: {type: number, display_name: CPU usage, tags: {team: edge}}
  core_load: {type: number-list, display_name: Load per core}
  services: string-list
  peers: {type: ip-address-list}
"""


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[str], str]:
    def write(metrics_yaml: str = METRICS) -> str:
        path = tmp_path / "agent.yaml"
        path.write_text(CONFIG_HEAD + textwrap.dedent(metrics_yaml), encoding="utf-8")
        return str(path)

    return write


@pytest.fixture
def cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., Tuple[int, str, str]]:
    """Run `defender-agent ARGS` in process; returns (exit status, stdout, stderr)."""

    def run(*argv: str) -> Tuple[int, str, str]:
        root = logging.getLogger()
        saved = (root.handlers[:], root.level)
        capsys.readouterr()
        try:
            code = agent_cli.run(list(argv))
        finally:
            root.handlers[:], _ = saved[0], root.setLevel(saved[1])  # cli.setup_logging bound capsys's stderr
        out, err = capsys.readouterr()
        return code, out, err

    return run


def lines(text: str) -> List[str]:
    return [line for line in text.splitlines() if line.strip()]
