"""Can the current user read what a collector reads? (``CollectorSpec.reads``, used by `check`).

A source is an absolute path (a file: readable; a directory: listable) or ``"journal"``: the systemd journal,
which shows other users' and the system's messages only to root and to the groups ``systemd-journal``,
``adm`` and ``wheel`` (systemd-journald.service(8), "Access Control"). Pure apart from the ``os`` reads.
"""

from __future__ import annotations

import grp
import os
import pwd
from pathlib import Path
from typing import Callable, Iterable, List, Optional, Tuple

JOURNAL = "journal"
JOURNAL_GROUPS = ("systemd-journal", "adm", "wheel")
JOURNAL_DIRS = (Path("/var/log/journal"), Path("/run/log/journal"))


def user_name(uid: Optional[int] = None) -> str:
    uid = os.geteuid() if uid is None else uid
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _gid(name: str) -> Optional[int]:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


def journal_problem(
    uid: Optional[int] = None,
    groups: Optional[Iterable[int]] = None,
    dirs: Tuple[Path, ...] = JOURNAL_DIRS,
) -> Optional[str]:
    """Why the current user cannot read the system journal, or None."""
    if not any(d.is_dir() for d in dirs):
        return "no systemd journal on this system (/var/log/journal, /run/log/journal): use source: file"
    uid = os.geteuid() if uid is None else uid
    if uid == 0:
        return None
    have = set(os.getgroups() if groups is None else groups) | ({os.getegid()} if groups is None else set())
    wanted = [g for g in JOURNAL_GROUPS if _gid(g) is not None]
    if any(_gid(g) in have for g in wanted):
        return None
    return (
        f"the system journal is readable only by root and the groups {', '.join(wanted) or 'systemd-journal'}; "
        "the service gets systemd-journal through SupplementaryGroups= (docs/INSTALL.md, section 7)"
    )


def path_problem(path: str) -> Optional[str]:
    """Why the current user cannot read ``path`` (a file) or list it (a directory), or None."""
    p = Path(path)
    try:
        is_dir = p.is_dir()
        exists = is_dir or p.exists()
    except OSError as exc:  # a parent directory not searchable
        return f"cannot reach {path}: {exc.strerror or exc}"
    if not exists:
        parent = p.parent
        if parent != p and parent.is_dir() and not os.access(parent, os.R_OK | os.X_OK):
            return f"cannot look into {parent} (for {path})"
        return f"{path} does not exist"
    mode = os.R_OK | os.X_OK if is_dir else os.R_OK
    if not os.access(p, mode, effective_ids=os.access in os.supports_effective_ids):
        return f"cannot {'list' if is_dir else 'read'} {path}"
    return None


def source_problem(source: str) -> Optional[str]:
    return journal_problem() if source == JOURNAL else path_problem(source)


def access_problems(
    sources: Iterable[str], probe: Callable[[str], Optional[str]] = source_problem
) -> List[str]:
    """The problems of the sources a collector reads, one per source that cannot be read, in order."""
    out: List[str] = []
    for source in dict.fromkeys(sources):
        problem = probe(source)
        if problem is not None:
            out.append(problem)
    return out
