"""Fixtures of the fleet tests: mosquitto with mutual TLS, the emulator's shadow service on it (in this
process, on a recording store), and a real ``defender-agent run`` per test (stopped at teardown)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, List

import pytest

from devkit.broker import Broker
from devkit.certs import Pki
from devkit.emulator.apimodel import ServiceModel
from tests.delivery.conftest import broker, pki  # noqa: F401  (shared fixtures)
from tests.fleet.rig import AgentProcess, RecordingShadows, ShadowService


@pytest.fixture(scope="session")
def iot_data_model() -> ServiceModel:
    return ServiceModel("iot-data")


@pytest.fixture
def shadows() -> RecordingShadows:
    return RecordingShadows()


@pytest.fixture
def service(pki: Pki, broker: Broker, shadows: RecordingShadows,  # noqa: F811
            iot_data_model: ServiceModel) -> Iterator[ShadowService]:
    s = ShadowService(pki, broker, shadows, iot_data_model).start()
    yield s
    s.stop()


@pytest.fixture
def agents() -> Iterator[List[AgentProcess]]:
    """Agent processes a test started: each one stopped at teardown, whatever happened."""
    started: List[AgentProcess] = []
    yield started
    for agent in started:
        agent.stop()


@pytest.fixture
def work(tmp_path: Path) -> Path:
    return tmp_path
