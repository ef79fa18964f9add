"""agent.security.audit_files on real files: owners, modes, ACLs, systemd credentials."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import List

import pytest

from agent.config.load import load_config
from agent.security import (
    ACL_GROUP_OBJ,
    ACL_MASK,
    ACL_OTHER,
    ACL_USER,
    ACL_USER_OBJ,
    audit_files,
    read_acl,
    resolve_credential,
)
from tests.security.gateway_files import GatewayFiles, encode_acl, make_gateway_files

NOBODY = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")


@pytest.fixture
def gw(tmp_path: Path) -> GatewayFiles:
    return make_gateway_files(tmp_path / "gw")


def audit(gw: GatewayFiles, env: dict[str, str] | None = None, uid: int | None = None) -> List[str]:
    config = load_config(str(gw.config))
    return [str(p) for p in audit_files(config, env=env or {}, uid=uid)]


def set_acl(path: Path, entries: list[tuple[int, int, int]]) -> None:
    try:
        os.setxattr(path, "system.posix_acl_access", encode_acl(entries))
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            pytest.skip(f"the filesystem of {path} has no POSIX ACLs")
        raise


def test_good_layout_has_no_problems(gw: GatewayFiles) -> None:
    assert audit(gw) == []


@pytest.mark.parametrize(
    ("mode", "who"), [(0o644, "its group and others"), (0o640, "its group"), (0o604, "others")]
)
def test_key_readable_by_group_or_others_is_refused(gw: GatewayFiles, mode: int, who: str) -> None:
    os.chmod(gw.key, mode)
    [problem] = audit(gw)
    assert f"{gw.key}: private key is readable or writable by {who} (mode {mode:04o})" in problem
    assert f"Fix: chmod 600 {gw.key}" in problem
    assert "mqtt.key" in problem and str(gw.config) in problem


def test_key_mode_400_and_700_are_fine(gw: GatewayFiles) -> None:
    os.chmod(gw.key, 0o400)
    assert audit(gw) == []
    os.chmod(gw.key, 0o700)
    assert audit(gw) == []


@needs_root
def test_key_owned_by_another_user_is_refused(gw: GatewayFiles) -> None:
    os.chown(gw.key, NOBODY, NOBODY)
    [problem] = audit(gw)
    assert f"{gw.key}: private key is owned by uid {NOBODY}" in problem
    assert "not by root or the user the agent runs as (uid 0 (root))" in problem
    assert f"chmod 600 {gw.key}" in problem


@needs_root
def test_root_owned_key_is_accepted_for_an_unprivileged_agent(gw: GatewayFiles) -> None:
    # uid= stands for "the agent runs as nobody"; the files stay root-owned.
    assert audit(gw, uid=NOBODY) == []


@pytest.mark.parametrize(
    ("mode", "who"), [(0o666, "its group and others"), (0o646, "others"), (0o664, "its group")]
)
def test_config_writable_by_others_is_refused(gw: GatewayFiles, mode: int, who: str) -> None:
    os.chmod(gw.config, mode)
    [problem] = audit(gw)
    assert f"{gw.config}: config file is writable by {who} (mode {mode:04o})" in problem
    assert f"Fix: chmod go-w {gw.config}" in problem


def test_config_directory_writable_by_others_is_refused_unless_sticky(gw: GatewayFiles) -> None:
    os.chmod(gw.root, 0o777)
    [problem] = audit(gw)
    assert (
        f"{gw.root}: the config file's directory is writable by its group and others (mode 0777)" in problem
    )
    os.chmod(gw.root, 0o1777)
    assert audit(gw) == []


def test_ca_writable_by_others_is_refused(gw: GatewayFiles) -> None:
    os.chmod(gw.ca, 0o666)
    [problem] = audit(gw)
    assert "mqtt.ca" in problem and "CA bundle is writable by its group and others (mode 0666)" in problem


def test_all_problems_are_reported_together(gw: GatewayFiles) -> None:
    os.chmod(gw.key, 0o644)
    os.chmod(gw.config, 0o666)
    os.chmod(gw.cert, 0o666)
    assert len(audit(gw)) == 3


def test_acl_granting_another_user_read_is_refused(gw: GatewayFiles) -> None:
    set_acl(
        gw.key,
        [
            (ACL_USER_OBJ, 6, 0),
            (ACL_USER, 4, 12345),
            (ACL_GROUP_OBJ, 0, 0),
            (ACL_MASK, 4, 0),
            (ACL_OTHER, 0, 0),
        ],
    )
    assert os.stat(gw.key).st_mode & 0o777 == 0o640  # what ls -l shows: the mask in the group bits
    [problem] = audit(gw)
    assert "uid 12345 (ACL)" in problem and "its group" not in problem
    assert f"chmod 600 {gw.key} && setfacl -b {gw.key}" in problem


def test_systemd_credential_copy_is_accepted(gw: GatewayFiles, tmp_path: Path) -> None:
    """A credential copy that is root-owned, 0400, with an ACL user:<service>:r (ls shows 0440), as systemd
    versions that keep credentials on a filesystem with ACLs may leave it. systemd 252's own shape
    (ramfs, owned by the service user, no ACL) is tested with the unit's layout in tests/install."""
    creds = tmp_path / "credentials"
    creds.mkdir()
    copy = creds / "private.pem.key"
    copy.write_bytes(gw.key.read_bytes())
    os.chmod(copy, 0o400)
    set_acl(
        copy,
        [
            (ACL_USER_OBJ, 4, 0),
            (ACL_USER, 4, NOBODY),
            (ACL_GROUP_OBJ, 0, 0),
            (ACL_MASK, 4, 0),
            (ACL_OTHER, 0, 0),
        ],
    )
    assert os.stat(copy).st_mode & 0o777 == 0o440
    assert read_acl(str(copy)) is not None
    env = {"CREDENTIALS_DIRECTORY": str(creds)}
    assert resolve_credential(str(gw.key), env) == str(copy)
    assert audit(gw, env=env, uid=NOBODY) == []
    # The same copy with a real group read bit is refused.
    set_acl(
        copy,
        [
            (ACL_USER_OBJ, 4, 0),
            (ACL_USER, 4, NOBODY),
            (ACL_GROUP_OBJ, 4, 0),
            (ACL_MASK, 4, 0),
            (ACL_OTHER, 0, 0),
        ],
    )
    [problem] = audit(gw, env=env, uid=NOBODY)
    assert f"{copy}: private key is readable or writable by its group" in problem


def test_resolve_credential_prefers_the_credentials_directory(tmp_path: Path) -> None:
    (tmp_path / "private.pem.key").write_text("x")
    env = {"CREDENTIALS_DIRECTORY": str(tmp_path)}
    assert resolve_credential("/etc/defender-agent/certs/private.pem.key", env) == str(
        tmp_path / "private.pem.key"
    )
    assert resolve_credential("private.pem.key", env) == str(tmp_path / "private.pem.key")
    assert resolve_credential("/etc/x/other.key", env) == "/etc/x/other.key"
    assert resolve_credential("/etc/x/private.pem.key", {}) == "/etc/x/private.pem.key"
