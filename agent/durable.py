"""Replace a small file so that a crash leaves the old content or the new, never a torn one."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def replace_file(path: Path, body: bytes, mode: int, sync: bool = True) -> None:
    """Write ``body`` to a temporary file beside ``path`` (``mode``, exactly), rename it over ``path``.

    ``sync``: fsync the file before the rename and the directory after it, so the rename survives a power
    cut (ids, remote config). Without it the rename is still atomic against a crash or a kill -9 of the agent
    (the kernel keeps the data): enough for state whose loss after a power cut is handled (counter snapshots,
    a collector's position), at no fsync per round. A failed write leaves no temporary file. Raises OSError.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        try:
            os.fchmod(fd, mode)  # O_CREAT's mode is masked by the umask, and an older temporary file keeps its own
            view = memoryview(body)
            while view:
                view = view[os.write(fd, view):]
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if sync:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
