"""Report ids that only go up: across restarts, crashes and clock steps backwards.

The next id is ``max(last + 1, epoch seconds)``. The last id handed out is
written to ``state_dir/last_report_id`` (write, fsync, rename) *before* the id is
used, so a crash can skip an id but never reuse one. The outbox also records the
ids it holds; the caller passes that as ``floor`` so a lost or damaged file
cannot send the counter backwards either.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

ID_FILE = "last_report_id"


def read_last_id(state_dir: Path) -> int:
    """The persisted last id, 0 when missing or unreadable."""
    try:
        text = (state_dir / ID_FILE).read_text(encoding="ascii").strip()
        value = int(text)
    except (OSError, ValueError, UnicodeDecodeError):
        return 0
    return max(value, 0)


def write_last_id(state_dir: Path, value: int) -> None:
    path = state_dir / ID_FILE
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    try:
        os.write(fd, f"{value}\n".encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(state_dir, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class ReportIds:
    """Hands out strictly increasing report ids, persisted in ``state_dir``."""

    def __init__(self, state_dir: Path, floor: int = 0, clock: Callable[[], float] = time.time) -> None:
        self.state_dir = state_dir
        self.clock = clock
        self.last = max(read_last_id(state_dir), floor)

    def next(self) -> int:
        candidate = max(self.last + 1, int(self.clock()))
        write_last_id(self.state_dir, candidate)
        self.last = candidate
        return candidate
