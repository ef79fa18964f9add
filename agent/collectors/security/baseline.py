"""The file baseline of ``file_integrity``: one entry per path, the bounded walk, the comparison.

An entry is what is compared of a path: kind, mode, owner, group, size, the SHA-256 of its content (a
symlink: of its target's name) and the stamp ``(inode, mtime, ctime)`` it had when hashed. :func:`walk` lists
the watched paths within a cap on entries; :func:`compare` turns the saved entries and a walk into the new
entries and the changed paths, hashing through a :class:`Hasher` that holds the round's byte budget. Pure
apart from ``lstat``, ``readlink`` and reading the files it hashes.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

_CHUNK = 2**20

Stamp = Tuple[int, int, int]  # inode, mtime_ns, ctime_ns


@dataclass(frozen=True)
class Entry:
    """What is compared of one path. ``digest`` None: not hashed (unreadable, too large, or not reached yet)."""

    kind: str  # "file", "link", "dir" or "other"
    mode: int
    uid: int
    gid: int
    size: int
    digest: Optional[str]
    stamp: Stamp

    def to_json(self) -> List[Any]:
        return [self.kind, self.mode, self.uid, self.gid, self.size, self.digest, *self.stamp]

    @classmethod
    def from_json(cls, raw: Any) -> Entry:
        kind, mode, uid, gid, size, digest, ino, mtime, ctime = raw
        if kind not in ("file", "link", "dir", "other") or not (digest is None or isinstance(digest, str)):
            raise ValueError(f"bad entry {raw!r}")
        ints = (mode, uid, gid, size, ino, mtime, ctime)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in ints):
            raise ValueError(f"bad entry {raw!r}")
        return cls(kind, mode, uid, gid, size, digest, (ino, mtime, ctime))


def kind_of(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISLNK(mode):
        return "link"
    if stat.S_ISDIR(mode):
        return "dir"
    return "other"


def entry_of(st: os.stat_result, digest: Optional[str]) -> Entry:
    kind = kind_of(st.st_mode)
    size = 0 if kind == "dir" else st.st_size  # a directory's size follows its entries, counted themselves
    return Entry(kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, size, digest,
                 (st.st_ino, st.st_mtime_ns, st.st_ctime_ns))


def same_meta(old: Entry, new: Entry) -> bool:
    return (old.kind, old.mode, old.uid, old.gid, old.size) == (new.kind, new.mode, new.uid, new.gid, new.size)


def is_same(old: Entry, new: Entry) -> bool:
    """True when ``new`` (with its digest, or None when it was not hashed) shows no change against ``old`` (pure).

    Directories compare by kind, mode and owner. Files with both digests compare by content; otherwise an
    unmoved stamp means unchanged and a moved one means changed (nothing proves the content is the same).
    """
    if not same_meta(old, new):
        return False
    if new.kind == "dir":
        return True
    if old.digest is not None and new.digest is not None:
        return old.digest == new.digest
    return old.stamp == new.stamp


def under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


@dataclass
class Walk:
    """What a walk of the watched paths found: path -> lstat result, and what it could not do."""

    found: Dict[str, os.stat_result]
    truncated: bool = False
    unlisted: Tuple[str, ...] = ()  # directories that could not be listed: what was below them is kept


def walk(roots: Sequence[str], exclude: Sequence[str], max_files: int) -> Walk:
    """Every path at or below ``roots`` (symlinks not followed), sorted per directory, at most ``max_files``."""
    found: Dict[str, os.stat_result] = {}
    unlisted: List[str] = []
    stack: List[str] = list(reversed(roots))
    while stack:
        path = stack.pop()
        if path in found or (exclude and any(fnmatchcase(path, pattern) for pattern in exclude)):
            continue
        try:
            st = os.lstat(path)
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.ENOTDIR):
                unlisted.append(path)
            continue
        if len(found) >= max_files:
            return Walk(found, True, tuple(unlisted))
        found[path] = st
        if stat.S_ISDIR(st.st_mode):
            try:
                names = sorted(os.listdir(path))
            except OSError:
                unlisted.append(path)
                continue
            base = path.rstrip("/")
            stack.extend(f"{base}/{name}" for name in reversed(names))
    return Walk(found, False, tuple(unlisted))


def hash_file(path: str, limit: int) -> Tuple[Optional[str], Optional[os.stat_result]]:
    """(SHA-256 of the regular file at ``path``, the fstat it was read under), or (None, None) when it cannot
    be opened; (None, st) when it is not a regular file, is over ``limit`` bytes or changed while read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None, None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
            return None, st
        digest = hashlib.sha256()
        left = st.st_size + 1  # one byte more: a file that grew while read is caught below
        while left > 0:
            chunk = os.read(fd, min(_CHUNK, left))
            if not chunk:
                break
            digest.update(chunk)
            left -= len(chunk)
        after = os.fstat(fd)
        if (after.st_size, after.st_mtime_ns, after.st_ctime_ns) != (st.st_size, st.st_mtime_ns, st.st_ctime_ns) \
                or left != 1:
            return None, after  # written while read: compared by its stamp, hashed again next round
        return digest.hexdigest(), st
    finally:
        os.close(fd)


def link_digest(path: str) -> Optional[str]:
    try:
        return hashlib.sha256(os.fsencode(os.readlink(path))).hexdigest()
    except OSError:
        return None


@dataclass
class Round:
    """The outcome of one comparison: the new entries, the paths that changed, what is left for later."""

    entries: Dict[str, Entry]
    changed: List[str]
    hashed_bytes: int = 0
    deferred: int = 0  # files whose stamp moved but the byte budget did not reach this round


class Hasher:
    """Hashes files within a byte budget; ``read`` is :func:`hash_file` (a test may count its calls)."""

    def __init__(self, budget: int, max_file: int,
                 read: Callable[[str, int], Tuple[Optional[str], Optional[os.stat_result]]] = hash_file) -> None:
        self.left = budget
        self.max_file = max_file
        self.used = 0
        self._read = read

    def affordable(self, size: int) -> bool:
        return size <= self.max_file and size <= self.left

    def digest(self, path: str, st: os.stat_result) -> Tuple[Optional[str], os.stat_result]:
        """The digest of ``path`` and the stat it goes with (the walk's when the file cannot be read)."""
        if stat.S_ISLNK(st.st_mode):
            return link_digest(path), st
        if not stat.S_ISREG(st.st_mode) or not self.affordable(st.st_size):
            return None, st
        digest, read_st = self._read(path, self.max_file)
        charged = read_st.st_size if read_st is not None and digest is not None else 0
        self.left -= charged
        self.used += charged
        return digest, read_st if read_st is not None else st


def compare(old: Mapping[str, Entry], seen: Walk, roots: Sequence[str], hasher: Hasher,
            max_files: int) -> Round:
    """The new entries and the changed paths, ``old`` against what the walk ``seen`` found now.

    A path of ``old`` the walk did not reach (the file cap, a directory that could not be listed) is looked
    at on its own; only a path that is really gone counts as removed. New paths join only while fewer than
    ``max_files`` are watched, so the entries never grow past the cap.
    """
    entries: Dict[str, Entry] = {}
    changed: List[str] = []
    deferred = 0
    found = dict(seen.found)
    room = max_files - sum(1 for path in old if path in found)
    for path in old:
        if path not in found and any(under(path, root) for root in roots):
            try:
                found[path] = os.lstat(path)
            except OSError as exc:
                if exc.errno not in (errno.ENOENT, errno.ENOTDIR):
                    entries[path] = old[path]  # cannot tell: keep it
                    room -= 1
                continue
            room -= 1
    for path in sorted(found):
        st = found[path]
        before = old.get(path)
        if before is not None and before.stamp == (st.st_ino, st.st_mtime_ns, st.st_ctime_ns) \
                and before.digest is not None:
            entries[path] = before  # the common case: untouched since hashed (a chmod or chown moves the ctime)
            continue
        probe = entry_of(st, None)
        if before is None:
            if room <= 0:
                continue
            room -= 1
            digest, st = hasher.digest(path, st)
            entries[path] = entry_of(st, digest)
            changed.append(path)
            continue
        if probe.kind == "dir":
            entries[path] = probe
            if not same_meta(before, probe):
                changed.append(path)
            continue
        if not same_meta(before, probe):
            digest, st = hasher.digest(path, st)
            entries[path] = entry_of(st, digest)
            changed.append(path)
            continue
        if before.stamp == probe.stamp and (before.digest is not None or not _hashable(probe, hasher)):
            entries[path] = before
            continue
        if probe.kind == "file" and probe.size <= hasher.max_file and not hasher.affordable(probe.size):
            entries[path] = before  # not reached this round: compared in a later one
            deferred += before.stamp != probe.stamp
            continue
        digest, st = hasher.digest(path, st)
        new = entry_of(st, digest)
        if before.digest is None and before.stamp == probe.stamp:
            entries[path] = new if new.stamp == probe.stamp else before  # a hash filled in, not a change
            continue
        entries[path] = new
        if not is_same(before, new):
            changed.append(path)
    for path in old:
        if path not in entries and path not in found and any(under(path, root) for root in roots):
            changed.append(path)
    changed.sort()
    return Round(entries, changed, hasher.used, deferred)


def _hashable(probe: Entry, hasher: Hasher) -> bool:
    return probe.kind in ("file", "link") and (probe.kind == "link" or probe.size <= hasher.max_file)
