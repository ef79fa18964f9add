"""Fixtures for the install tests: the base install (no extras) and the shared broker fixtures."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.delivery.conftest import broker, pki, responder  # noqa: F401  (shared fixtures)

ROOT = Path(__file__).resolve().parents[2]
BASE_VENV_ENV = "DEFENDER_AGENT_BASE_VENV"
# `make test` installs the Debian package on this machine (`make debian-install`) and names its program here.
DEBIAN_ENV = "DEFENDER_AGENT_DEBIAN"
DEBIAN_PROGRAM = Path("/usr/bin/defender-agent")


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
    for stale in [ROOT / "build" / "lib", *(ROOT / "build").glob("bdist.*")]:  # setuptools would ship them
        shutil.rmtree(stale, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    str(ROOT)], check=True, timeout=600)
    return venv


@pytest.fixture(scope="session")
def debian_program() -> Path:
    """/usr/bin/defender-agent from the installed .deb: Debian's python3 and python3-* libraries.

    `make test` installs it and sets $DEFENDER_AGENT_DEBIAN; then a missing program fails. Run
    alone, without the package, the tests that need it are skipped.
    """
    if not os.environ.get(DEBIAN_ENV):
        pytest.skip("the Debian package is not installed here (`make test` installs it: make debian-install)")
    assert DEBIAN_PROGRAM.is_file(), f"${DEBIAN_ENV} is set but {DEBIAN_PROGRAM} is missing"
    return DEBIAN_PROGRAM


@pytest.fixture(params=["pypi", "debian"])
def installed(request: pytest.FixtureRequest) -> Path:
    """The installed `defender-agent` program of each library set: the base venv (newest from PyPI)
    and the Debian package (bookworm's python3-awscrt, -psutil, -cbor2, -yaml)."""
    if request.param == "pypi":
        return Path(request.getfixturevalue("base_venv")) / "bin" / "defender-agent"
    return Path(request.getfixturevalue("debian_program"))
