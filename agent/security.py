"""Checks on the files the agent trusts: certificate, private key, CA bundle, config.

:func:`audit_files` is the single entry point (``check`` and ``run`` call it);
every finding is a :class:`ConfigProblem` naming the path, the mode in octal
and the fix. Files are only ``stat``-ed and opened for one byte: their
contents never reach a message.

The trust rule, for every file the agent trusts:

- it is owned by root or by the user the agent runs as (any other owner can
  rewrite it or chmod it at will);
- nobody else can write it (group, others, or a POSIX ACL entry), because an
  editable config runs commands as the agent (exec collectors) and an editable
  CA bundle lets a man in the middle in;
- the private key, in addition, is readable by nobody but its owner and the
  agent's own user (``chmod 600``).

With the key on a PKCS#11 token (``mqtt.key: "pkcs11:..."``) there is no key file: the PIN file
(``mqtt.pkcs11_pin_file``) takes its place under the same rules, and the PKCS#11 module
(``mqtt.pkcs11_library``, code that runs inside the agent) must be a regular file owned by root
that nobody else may write.

Under systemd, ``LoadCredential=`` copies the key into ``$CREDENTIALS_DIRECTORY``
and the agent reads that copy. On systemd 252 the copy lives on a ramfs and
looks like ``-r-------- <service user> root`` with no ACL (ramfs holds none);
other versions may make it root-owned with an ACL entry for the service user,
so ACLs are read and judged entry by entry. Both shapes pass. The copy is not
the only file that matters: the on-disk key it was made from is the one the
operator manages and the one other local users could read, so it is audited
too, by ``stat`` alone (the service user may not open it).
"""

from __future__ import annotations

import os
import pwd
import shlex
import stat
import struct
from pathlib import Path
from typing import List, Mapping, Optional, Tuple

from agent.config.model import Config
from agent.errors import ConfigProblem

CREDENTIALS_ENV = "CREDENTIALS_DIRECTORY"

# Linux POSIX ACL extended attribute (see acl(5), linux/posix_acl_xattr.h).
_ACL_XATTR = "system.posix_acl_access"
_ACL_VERSION = 2
ACL_USER_OBJ, ACL_USER, ACL_GROUP_OBJ, ACL_GROUP, ACL_MASK, ACL_OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
_READ, _WRITE = 4, 2


def resolve_credential(path: str, env: Mapping[str, str] = os.environ) -> str:
    """The key file to read: a copy in $CREDENTIALS_DIRECTORY (systemd LoadCredential=) wins.

    A relative ``path`` is looked up in that directory as is; an absolute one by
    its file name, so ``key: /etc/defender-agent/certs/private.pem.key`` works
    both from a shell (``defender-agent check``) and under systemd with
    ``LoadCredential=private.pem.key:/etc/defender-agent/certs/private.pem.key``.
    """
    creds = env.get(CREDENTIALS_ENV)
    if creds:
        name = Path(path).name if os.path.isabs(path) else path
        candidate = Path(creds) / name
        if name and candidate.is_file():
            return str(candidate)
    return path


def audit_files(
    config: Config, env: Mapping[str, str] = os.environ, uid: Optional[int] = None
) -> List[ConfigProblem]:
    """Every problem with the files the agent trusts; empty when it may start.

    ``uid`` is the user the agent runs as (default: the effective uid).
    """
    me = os.geteuid() if uid is None else uid
    problems: List[ConfigProblem] = []
    source = config.source
    if os.path.isfile(source):
        for message in _config_file_problems(source, me):
            problems.append(ConfigProblem(source, "", message))
    mqtt = config.mqtt
    secrets = ("pkcs11_pin_file",) if mqtt is not None and mqtt.on_token else ("key",)
    for key in ("cert", *secrets, "ca") if mqtt is not None else ():
        raw = getattr(mqtt, key)
        if raw is None:  # a pkcs11_pin_file left out: the loader has said so already
            continue
        path = resolve_credential(raw, env) if key in secrets else raw
        problem = _readable(path)
        if problem:
            problems.append(ConfigProblem(source, f"mqtt.{key}", f"{path}: {problem}"))
            continue
        what = {"cert": "certificate", "key": "private key", "ca": "CA bundle", "pkcs11_pin_file": "PIN file"}[key]
        for message in _trusted_file_problems(path, what, me, secret=(key in secrets)):
            problems.append(ConfigProblem(source, f"mqtt.{key}", message))
        if path != raw:  # a LoadCredential= copy: judge the file on disk it was made from as well
            for message in _source_of_copy_problems(raw, me, what):
                problems.append(ConfigProblem(source, f"mqtt.{key}", message))
    if mqtt is not None and mqtt.on_token and mqtt.pkcs11_library is not None:
        for message in module_problems(mqtt.pkcs11_library):
            problems.append(ConfigProblem(source, "mqtt.pkcs11_library", message))
    return problems


def module_problems(path: str) -> List[str]:
    """The PKCS#11 module: a regular file owned by root that nobody else may write (it runs inside the agent,
    with the PIN at hand)."""
    quoted = shlex.quote(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return [f"{path}: PKCS#11 module not found. Fix: install the package that ships it (softhsm2; TPM 2.0: "
                f"libtpm2-pkcs11-1) or correct the path (dpkg -L PACKAGE | grep '\\.so')"]
    except OSError as exc:
        return [f"{path}: cannot stat the PKCS#11 module: {exc.strerror}"]
    if not stat.S_ISREG(st.st_mode):
        return [f"{path}: the PKCS#11 module must be a regular file (a symlink to one is fine), "
                f"not a {'directory' if stat.S_ISDIR(st.st_mode) else 'special file'}"]
    out: List[str] = []
    if st.st_uid != 0:
        out.append(f"{path}: PKCS#11 module is owned by {_describe_uid(st.st_uid)}, not root; whoever owns it runs "
                   f"code inside the agent. Fix: chown root {quoted}")
    writers = _others_with(path, st, 0, _WRITE)
    if writers:
        out.append(f"{path}: PKCS#11 module is writable by {_join(writers)} (mode {_mode(st.st_mode)}). "
                   f"Fix: chmod go-w {quoted}" + _acl_fix(writers, quoted))
    return out


def _source_of_copy_problems(path: str, me: int, what: str = "private key") -> List[str]:
    """The on-disk key behind a credential copy, judged by ``stat`` alone.

    When the service user cannot even ``stat`` it (a directory it may not enter)
    or it is gone, nobody else can read it through that path either: nothing to report.
    """
    try:
        os.stat(path)
    except OSError:
        return []
    return _trusted_file_problems(path, f"{what} on disk (the file systemd's LoadCredential= copies)", me,
                                  secret=True)


def _readable(path: str) -> Optional[str]:
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except FileNotFoundError:
        return "file not found"
    except IsADirectoryError:
        return "is a directory, expected a file"
    except PermissionError:
        return f"not readable by uid {os.getuid()} (check owner and mode)"
    except OSError as exc:
        return f"cannot read it: {exc.strerror}"
    return None


def _config_file_problems(path: str, me: int) -> List[str]:
    out = _trusted_file_problems(path, "config file", me, secret=False)
    parent = os.path.dirname(os.path.abspath(path))
    try:
        st = os.stat(parent)
    except OSError:
        return out
    others = _others_with(parent, st, me, _WRITE)
    if others and not st.st_mode & stat.S_ISVTX:
        out.append(
            f"{parent}: the config file's directory is writable by {_join(others)} "
            f"(mode {_mode(st.st_mode)}), so the config can be replaced. "
            f"Fix: chmod go-w {shlex.quote(parent)}"
        )
    return out


def _trusted_file_problems(path: str, what: str, me: int, secret: bool) -> List[str]:
    try:
        st = os.stat(path)
    except OSError as exc:
        return [f"{path}: cannot stat it: {exc.strerror}"]
    out: List[str] = []
    quoted = shlex.quote(path)
    mode = _mode(st.st_mode)
    if st.st_uid not in (me, 0):
        fix = f"chown {_user(me) if secret and me != 0 else 'root'} {quoted}"
        if secret:
            fix += " && chmod 600 " + quoted
        out.append(
            f"{path}: {what} is owned by {_describe_uid(st.st_uid)}, not by root or the user the agent "
            f"runs as ({_describe_uid(me)}); that user can read or replace it. Fix: {fix}"
        )
    if secret:
        readers = _others_with(path, st, me, _READ | _WRITE)
        if readers:
            out.append(
                f"{path}: {what} is readable or writable by {_join(readers)} (mode {mode}); "
                f"it must be readable only by its owner. Fix: chmod 600 {quoted}" + _acl_fix(readers, quoted)
            )
    else:
        writers = _others_with(path, st, me, _WRITE)
        if writers:
            consequence = (
                "anyone who can edit it can run commands as the agent (exec collectors)"
                if what == "config file"
                else "anyone who can edit it can redirect or impersonate the agent's connection"
            )
            out.append(
                f"{path}: {what} is writable by {_join(writers)} (mode {mode}); {consequence}. "
                f"Fix: chmod go-w {quoted}" + _acl_fix(writers, quoted)
            )
    return out


def _others_with(path: str, st: os.stat_result, me: int, bits: int) -> List[str]:
    """Who, besides the file's owner and the agent's own user, has any of ``bits`` (r=4, w=2)."""
    acl = read_acl(path)
    if acl is None:
        out = []
        if (st.st_mode >> 3) & bits:
            out.append("its group")
        if st.st_mode & bits:
            out.append("others")
        return out
    mask = next((perm for tag, perm, _ in acl if tag == ACL_MASK), 7)
    out = []
    for tag, perm, ident in acl:
        if tag == ACL_GROUP_OBJ and perm & mask & bits:
            out.append("its group")
        elif tag == ACL_USER and perm & mask & bits and ident not in (me, st.st_uid):
            out.append(f"{_describe_uid(ident)} (ACL)")
        elif tag == ACL_GROUP and perm & mask & bits:
            out.append(f"group {ident} (ACL)")
        elif tag == ACL_OTHER and perm & bits:
            out.append("others")
    return out


def read_acl(path: str) -> Optional[List[Tuple[int, int, int]]]:
    """The POSIX access ACL of ``path`` as (tag, perm, id) entries, or None when it has none."""
    try:
        raw = os.getxattr(path, _ACL_XATTR)
    except OSError:  # ENODATA (no ACL), ENOTSUP (filesystem without ACLs)
        return None
    if len(raw) < 4 or (len(raw) - 4) % 8 or struct.unpack_from("<I", raw)[0] != _ACL_VERSION:
        return None
    return [struct.unpack_from("<HHI", raw, offset) for offset in range(4, len(raw), 8)]


def _acl_fix(who: List[str], quoted: str) -> str:
    return f" && setfacl -b {quoted}" if any("(ACL)" in w for w in who) else ""


def _mode(st_mode: int) -> str:
    return f"{stat.S_IMODE(st_mode):04o}"


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _describe_uid(uid: int) -> str:
    name = _user(uid)
    return f"uid {uid}" if name == str(uid) else f"uid {uid} ({name})"


def _join(items: List[str]) -> str:
    return " and ".join(items) if len(items) <= 2 else ", ".join(items[:-1]) + " and " + items[-1]
