"""Replace a small file so that a crash leaves the old content or the new, never a torn one."""

from __future__ import annotations

import os
from pathlib import Path


def replace_file(path: Path, body: bytes, mode: int) -> None:
    """Write ``body`` to a temporary file beside ``path`` (``mode``), fsync it, rename it over ``path`` and
    fsync the directory, so the rename itself survives a power cut. Raises OSError."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # an older temporary file keeps its mode through O_CREAT
        os.write(fd, body)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
