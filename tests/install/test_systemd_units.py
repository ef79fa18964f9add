"""The shipped systemd units: `systemd-analyze verify` is clean and the agent's offline
exposure score is at most 2.0 (`systemd-analyze security --offline=yes`, systemd >= 250)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Optional

import pytest

REPO = Path(__file__).resolve().parents[2]
UNITS = REPO / "systemd"
MAIN = "defender-agent.service"
BOOTSTRAP = "defender-agent-bootstrap.service"
MAX_EXPOSURE = 2.0
INSTALLED_BINARY = "/usr/bin/defender-agent"  # the package's; install.sh rewrites it to its venv

ANALYZE = shutil.which("systemd-analyze")
pytestmark = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")


def systemd_version() -> Optional[int]:
    out = subprocess.run([ANALYZE or "", "--version"], capture_output=True, text=True, check=False).stdout
    match = re.search(r"systemd (\d+)", out)
    return int(match.group(1)) if match else None


def exposure(unit: Path) -> tuple[float, str]:
    if (systemd_version() or 0) < 250:
        pytest.skip(f"systemd-analyze security --offline needs systemd >= 250, found {systemd_version()}")
    result = subprocess.run(
        [ANALYZE or "", "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=unit.parent,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d)", result.stdout)
    assert match, f"no score in the output:\n{result.stdout}\n{result.stderr}"
    return float(match.group(1)), result.stdout


def test_main_unit_exposure_is_at_most_2(capsys: pytest.CaptureFixture[str]) -> None:
    score, report = exposure(UNITS / MAIN)
    with capsys.disabled():
        print(f"\n{MAIN}: systemd-analyze security --offline=yes exposure {score} (limit {MAX_EXPOSURE})")
    assert score <= MAX_EXPOSURE, report
    # The same gate the way an operator would run it: --threshold is 10x the printed score.
    gate = subprocess.run(
        [ANALYZE or "", "security", "--offline=yes", f"--threshold={int(MAX_EXPOSURE * 10)}", MAIN],
        capture_output=True,
        timeout=60,
        check=False,
        cwd=UNITS,
    )
    assert gate.returncode == 0


@pytest.mark.parametrize("dropin", ["pkcs11-tpm2.conf", "pkcs11-softhsm.conf"])
def test_main_unit_with_a_pkcs11_dropin(dropin: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The drop-ins the package ships disabled (docs/HARDWARE-KEYS.md) keep the exposure at most 2.0,
    swap the key's credential for the PIN's, and change nothing else that the agent relies on.

    A drop-in's lines apply after the unit's, as lines appended to it do: the merged file is what
    systemd runs (`make systemd-test` checks the real drop-in under systemd 252)."""
    text = (UNITS / dropin).read_text()
    assert text.startswith("#") and "\n[Service]\n" in text
    merged = tmp_path / MAIN
    merged.write_text((UNITS / MAIN).read_text() + "\n" + text)
    score, report = exposure(merged)
    with capsys.disabled():
        print(f"\n{MAIN} + {dropin}: exposure {score} (limit {MAX_EXPOSURE})")
    assert score <= MAX_EXPOSURE, report
    settings: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    # An empty LoadCredential= first: the key file is gone, and systemd refuses (243) a missing one.
    assert settings["LoadCredential"] == ["", "pkcs11-pin:/etc/defender-agent/pkcs11-pin"]
    # Nothing that would weaken what the sandbox promises beyond the devices a TPM needs.
    allowed = {"LoadCredential", "Environment", "PrivateDevices", "DevicePolicy", "DeviceAllow",
               "SupplementaryGroups"}
    assert set(settings) <= allowed, sorted(set(settings) - allowed)
    if "PrivateDevices" in settings:
        assert settings["DevicePolicy"] == ["closed"] and settings["DeviceAllow"] == ["/dev/tpmrm0 rw"]


def test_bootstrap_unit_exposure(capsys: pytest.CaptureFixture[str]) -> None:
    score, report = exposure(UNITS / BOOTSTRAP)
    with capsys.disabled():
        print(f"\n{BOOTSTRAP}: exposure {score}")
    assert score <= MAX_EXPOSURE, report


def test_units_verify_clean(tmp_path: Path) -> None:
    """verify needs ExecStart to exist: point it at a stand-in executable, change nothing else."""
    stand_in = tmp_path / "defender-agent"
    stand_in.write_text("#!/bin/sh\nexit 0\n")
    stand_in.chmod(0o755)
    copies = []
    for name in (MAIN, BOOTSTRAP):
        text = (UNITS / name).read_text()
        assert INSTALLED_BINARY in text
        (tmp_path / name).write_text(text.replace(INSTALLED_BINARY, str(stand_in)))
        copies.append(str(tmp_path / name))
    result = subprocess.run(
        [ANALYZE or "", "verify", *copies], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == "", result.stdout + result.stderr


def read_service_section(name: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    section = ""
    for raw in (UNITS / name).read_text().splitlines():
        line = raw.strip()
        if line.startswith("["):
            section = line
        elif line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            settings.setdefault(f"{section}{key}", []).append(value)
    return settings


def test_main_unit_contract() -> None:
    """What the rest of the agent relies on (and what must never creep in)."""
    s = read_service_section(MAIN)
    assert s["[Service]Type"] == ["notify"]
    assert "78" in s["[Service]RestartPreventExitStatus"][0].split()
    assert s["[Service]Restart"] == ["on-failure"]
    assert s["[Service]User"] == ["defender-agent"]
    assert s["[Service]ExecStart"] == [f"{INSTALLED_BINARY} run"]
    assert s["[Service]LoadCredential"] == ["private.pem.key:/etc/defender-agent/certs/private.pem.key"]
    assert s["[Service]CapabilityBoundingSet"] == [""]
    assert "[Service]WatchdogSec" in s
    assert "[Unit]StartLimitBurst" in s
    # Settings that would blind the collectors.
    for blinding in ("ProcSubset", "ProtectProc", "PrivateNetwork", "IPAddressDeny"):
        assert f"[Service]{blinding}" not in s, blinding
    assert "AF_NETLINK" in s["[Service]RestrictAddressFamilies"][0]
    boot = read_service_section(BOOTSTRAP)
    assert boot["[Service]Type"] == ["oneshot"]
    assert boot["[Install]WantedBy"] == [MAIN]
    assert "defender-agent-bootstrap.service" in s["[Unit]After"][0]
