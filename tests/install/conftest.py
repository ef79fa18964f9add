"""Fixtures for the install tests: the base install (no extras) and the shared broker fixtures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.delivery.conftest import broker, pki, responder  # noqa: F401  (shared fixtures)

ROOT = Path(__file__).resolve().parents[2]
BASE_VENV_ENV = "DEFENDER_AGENT_BASE_VENV"


@pytest.fixture(scope="session")
def base_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv holding `pip install .` with no extras, as a gateway gets it.

    `make test` builds it fresh (``.venv-base``) and names it in $DEFENDER_AGENT_BASE_VENV;
    run alone, the suite builds its own here (pip, from the configured package index).
    """
    given = os.environ.get(BASE_VENV_ENV)
    if given:
        venv = Path(given)
        assert (venv / "bin" / "defender-agent").is_file(), f"${BASE_VENV_ENV}={given} holds no defender-agent"
        return venv
    venv = tmp_path_factory.mktemp("base") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    str(ROOT)], check=True, timeout=600)
    return venv
