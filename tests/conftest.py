"""Suite-wide guard: in CI the broker tests must run, not skip."""

from __future__ import annotations

import os

import pytest

from agent.devtools.broker import find_mosquitto


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("CI") and find_mosquitto() is None:
        raise pytest.UsageError(
            "CI is set but mosquitto is not installed: the broker tests would be skipped. "
            "Run `make test`, which installs it with apt-get."
        )
