"""scripts/install.sh into a throwaway root prefix: files, owners, modes, idempotency, uninstall.

The prefix has its own etc/passwd and etc/group; the script creates the service
user there (systemd-sysusers --root, or useradd --prefix) and chowns to the
numeric ids it finds there, so the host's users are never touched.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path
from typing import Dict, Tuple

import pytest

from agent.config.load import parse_config

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "install.sh"
USER = "defender-agent"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="install.sh chowns files and must run as root")


def install(prefix: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        ["bash", str(SCRIPT), "--prefix", str(prefix), "--from", str(REPO), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture
def prefix(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
    )
    (root / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
    return root


def ids(prefix: Path) -> Tuple[int, int]:
    for line in (prefix / "etc" / "passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == USER:
            return int(fields[2]), int(fields[3])
    raise AssertionError(f"{USER} not in {prefix}/etc/passwd")


def tree(prefix: Path) -> Dict[str, Tuple[str, int, int, int]]:
    """path -> (kind, mode, uid, gid) for everything outside etc/ (user databases change by design)."""
    out = {}
    for path in sorted(prefix.rglob("*")):
        rel = str(path.relative_to(prefix))
        if rel.startswith("etc/") and rel.count("/") == 1 and path.is_file():
            continue  # passwd, group, shadow and their backups
        st = path.lstat()
        kind = "link" if stat.S_ISLNK(st.st_mode) else "dir" if stat.S_ISDIR(st.st_mode) else "file"
        out[rel] = (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
    return out


def test_install_creates_user_files_owners_and_modes(prefix: Path) -> None:
    host_passwd = Path("/etc/passwd").read_text()
    result = install(prefix, "--skip-venv")
    uid, gid = ids(prefix)
    assert 0 < uid < 1000, "a system uid"
    entry = next(
        line for line in (prefix / "etc/passwd").read_text().splitlines() if line.startswith(USER + ":")
    )
    assert entry.endswith(":/var/lib/defender-agent:/usr/sbin/nologin")
    assert Path("/etc/passwd").read_text() == host_passwd, "the host's users must not change"

    t = tree(prefix)
    expected = {
        "opt/defender-agent": ("dir", 0o755, 0, 0),
        "etc/defender-agent": ("dir", 0o755, 0, 0),
        "etc/defender-agent/certs": ("dir", 0o750, 0, gid),
        "etc/defender-agent/agent.yaml": ("file", 0o640, 0, gid),
        "var/lib/defender-agent": ("dir", 0o700, uid, gid),
        "etc/systemd/system/defender-agent.service": ("file", 0o644, 0, 0),
        "etc/systemd/system/defender-agent-bootstrap.service": ("file", 0o644, 0, 0),
        "opt/defender-agent/share/systemd/pkcs11-tpm2.conf": ("file", 0o644, 0, 0),
        "opt/defender-agent/share/systemd/pkcs11-softhsm.conf": ("file", 0o644, 0, 0),
    }
    for rel, want in expected.items():
        assert t.get(rel) == want, f"{rel}: {t.get(rel)} != {want}"
    # The PKCS#11 drop-ins: the package's files byte for byte, and disabled (no drop-in directory).
    for dropin in ("pkcs11-tpm2.conf", "pkcs11-softhsm.conf"):
        assert (prefix / "opt/defender-agent/share/systemd" / dropin).read_bytes() == (REPO / "systemd" / dropin).read_bytes()
    assert not (prefix / "etc/systemd/system/defender-agent.service.d").exists()
    link = prefix / "usr/local/bin/defender-agent"
    assert os.readlink(link) == "/opt/defender-agent/venv/bin/defender-agent"
    for unit in ("defender-agent.service", "defender-agent-bootstrap.service"):
        # The package's unit, marked as the script's, with ExecStart= in the virtualenv: nothing else differs.
        shipped = (REPO / "systemd" / unit).read_text()
        installed = (prefix / "etc/systemd/system" / unit).read_text()
        assert installed == "# (installed by scripts/install.sh)\n" + shipped.replace(
            "ExecStart=/usr/bin/defender-agent ", "ExecStart=/opt/defender-agent/venv/bin/defender-agent ")
        assert "ExecStart=/usr/bin/defender-agent " in shipped
    # The placeholder config is valid and holds no secrets: it only names the key's path.
    text = (prefix / "etc/defender-agent/agent.yaml").read_text()
    config = parse_config(text, "agent.yaml")
    assert config.mqtt.key == "/etc/defender-agent/certs/private.pem.key"
    assert "BEGIN" not in text
    for step in ("defender-agent check", "systemctl enable --now defender-agent", "agent.yaml", "-m 600"):
        assert step in result.stdout


def test_install_is_idempotent_and_keeps_an_edited_config(prefix: Path) -> None:
    install(prefix, "--skip-venv")
    config = prefix / "etc/defender-agent/agent.yaml"
    config.write_text(config.read_text().replace("CHANGE-ME", "gw-7", 1))
    first = tree(prefix)
    second_run = install(prefix, "--skip-venv")
    assert tree(prefix) == first
    assert "thing_name: gw-7" in config.read_text()
    assert "kept existing /etc/defender-agent/agent.yaml" in second_run.stdout
    assert "user defender-agent exists" in second_run.stdout
    assert [line.split(":")[0] for line in (prefix / "etc/passwd").read_text().splitlines()].count(USER) == 1


def test_reinstall_makes_an_existing_key_root_only(prefix: Path) -> None:
    install(prefix, "--skip-venv")
    key = prefix / "etc/defender-agent/certs/private.pem.key"
    key.write_text("not a real key\n")
    key.chmod(0o644)
    os.chown(key, ids(prefix)[0], ids(prefix)[1])
    install(prefix, "--skip-venv")
    st = key.stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o600, 0, 0)


def test_uninstall_keeps_config_and_state_and_purge_removes_everything(prefix: Path) -> None:
    before = tree(prefix)
    install(prefix, "--skip-venv")
    (prefix / "var/lib/defender-agent/outbox.sqlite").write_text("state")
    result = install(prefix, "--uninstall")
    after = tree(prefix)
    for gone in ("opt/defender-agent", "usr/local/bin/defender-agent", "etc/systemd/system/defender-agent.service",
                 "etc/systemd/system/defender-agent-bootstrap.service"):  # fmt: skip
        assert gone not in after
    for kept in (
        "etc/defender-agent/agent.yaml",
        "etc/defender-agent/certs",
        "var/lib/defender-agent/outbox.sqlite",
    ):
        assert kept in after
    assert USER + ":" in (prefix / "etc/passwd").read_text()
    assert "--purge removes them" in result.stdout
    install(prefix, "--uninstall")  # idempotent too

    install(prefix, "--uninstall", "--purge")
    left = {rel: v for rel, v in tree(prefix).items() if rel not in before}
    assert all(kind == "dir" for kind, *_ in left.values()), (
        left
    )  # only standard empty dirs (usr/local/bin, ...)
    assert not any("defender-agent" in rel for rel in left), left
    assert USER + ":" not in (prefix / "etc/passwd").read_text()
    assert USER + ":" not in (prefix / "etc/group").read_text()


def test_foreign_unit_is_not_overwritten_or_removed(prefix: Path) -> None:
    unit = prefix / "etc/systemd/system/defender-agent.service"
    unit.parent.mkdir(parents=True)
    unit.write_text("[Service]\nExecStart=/bin/true\n")
    result = install(prefix, "--skip-venv", check=False)
    assert result.returncode != 0
    assert "was not installed by this script" in result.stderr
    install(prefix, "--uninstall")
    assert unit.read_text() == "[Service]\nExecStart=/bin/true\n"


def test_custom_service_user(prefix: Path) -> None:
    install(prefix, "--skip-venv", "--user", "gwagent")
    unit = (prefix / "etc/systemd/system/defender-agent.service").read_text()
    assert "\nUser=gwagent\n" in unit and "\nGroup=gwagent\n" in unit
    assert "gwagent:" in (prefix / "etc/passwd").read_text()


def test_bad_options_are_refused(prefix: Path) -> None:
    for args in (["--purge"], ["--user", "Bad User"], ["--frobnicate"]):
        result = install(prefix, *args, check=False)
        assert result.returncode != 0, args
        assert "install.sh: error:" in result.stderr


@pytest.mark.slow
def test_virtualenv_install_into_prefix(prefix: Path) -> None:
    """The real venv step as docs/INSTALL.md runs it by default: python3 -m venv + pip install of this
    checkout with its dependencies and no extras (from the configured package index; about 20 s)."""
    result = install(prefix)
    venv = prefix / "opt/defender-agent/venv"
    assert (venv / "bin/defender-agent").is_file()
    probe = subprocess.run(
        [
            str(venv / "bin/python"),
            "-c",
            "import importlib.util as u, agent, psutil, cbor2, yaml, awscrt; "
            "print(agent.__version__, u.find_spec('boto3') is None, u.find_spec('awsiot') is None)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd="/",
    )
    assert probe.returncode == 0, probe.stderr
    version, no_boto3, no_awsiot = probe.stdout.split()
    assert no_boto3 == "True", "the default install must not pull in boto3"
    assert no_awsiot == "True", "awscrt alone: awsiotsdk would pin one exact awscrt"
    assert f"installed defender-agent {version} into /opt/defender-agent/venv" in result.stdout
    assert tree(prefix)["opt/defender-agent/venv"][2:] == (0, 0)
    # The config is the installed program's own full example, not the fallback.
    written = (prefix / "etc/defender-agent/agent.yaml").read_text()
    assert written == (REPO / "config" / "agent.example.yaml").read_text()


@pytest.mark.slow
def test_a_broken_install_fails_loudly(prefix: Path) -> None:
    """pip succeeds but the program cannot run (here: no dependencies at all): the installer must say so
    and stop, not print "installed" and write a fallback config."""
    result = install(prefix, "--pip-args", "--no-deps", check=False)
    assert result.returncode != 0, result.stdout
    assert "install.sh: error: the installed program cannot load what 'check' and 'run' need" in result.stderr
    assert "ModuleNotFoundError" in result.stderr, "the import error itself must reach the operator"
    assert "installed defender-agent" not in result.stdout
    assert not (prefix / "etc/defender-agent/agent.yaml").exists()
