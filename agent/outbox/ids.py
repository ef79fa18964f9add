"""Report ids that only go up: across restarts, crashes, clock steps backwards and a lost outbox.

The next id is ``max(last + 1, epoch seconds)``, where ``last`` starts at the
highest id known on disk.

:class:`OutboxIds` hands the id out in memory only. It reaches the disk with its
report, in the outbox transaction that stores the report (``Outbox.max_known_id``
reads it back; a round without a defender sink commits its id in the status meta,
``last_report_id``, read back too), and nothing is published before that commit: a crash before it
loses an id that was never sent, which may then be handed out again for a
different report. No fsync of its own per report.

The outbox can be lost, though (moved aside as ``*.corrupt``, deleted): then its
ids are gone with it. For that case ``state_dir/report_id_reserve`` holds an upper
bound of every id handed out: before an id above the bound is used, the bound is
raised to ``id + RESERVE_AHEAD`` (write, fsync, rename, fsync dir). While ids follow
the clock that is one write per ``RESERVE_AHEAD`` seconds, not one per report. The
bound is a floor only for an outbox that holds no id yet (a fresh one): ids then
continue above it, possibly up to ``RESERVE_AHEAD`` ahead of the clock, which the
service allows (it asks for increasing ids; epoch seconds are only recommended).
Losing the outbox *and* this file leaves epoch seconds, as before.

``state_dir/last_report_id`` is what agents before the outbox-held ids wrote on
every report. It is still read as a floor, so an upgrade never goes back, but
nothing writes it any more.

Errors: the outbox's (see :mod:`agent.outbox.store`) while reading the highest
id, and :class:`OSError` from :meth:`OutboxIds.next` when the reserve file cannot
be written (the id is then not handed out).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Callable

from agent.durable import replace_file
from agent.outbox.store import Outbox, open_readonly

ID_FILE = "last_report_id"
RESERVE_FILE = "report_id_reserve"
RESERVE_AHEAD = 3600


def _read_int(path: Path) -> int:
    try:
        value = int(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError, UnicodeDecodeError):
        return 0
    return max(value, 0)


def _write_int(path: Path, value: int) -> None:
    replace_file(path, f"{value}\n".encode("ascii"), 0o640)


def read_last_id(state_dir: Path) -> int:
    """The last id ``state_dir`` records as handed out (the old id file and the outbox), 0 when none."""
    last = _read_int(state_dir / ID_FILE)
    box = open_readonly(state_dir)
    if box is not None:
        try:
            last = max(last, box.max_known_id())
        except sqlite3.Error:  # a damaged outbox: what the file says
            pass
        finally:
            box.close()
    return last


class OutboxIds:
    """Ids for reports that the caller stores in ``outbox`` before publishing them (see the module text)."""

    def __init__(self, state_dir: Path, outbox: Outbox, clock: Callable[[], float] = time.time) -> None:
        self.state_dir = state_dir
        self.clock = clock
        known = outbox.max_known_id()
        last_meta = outbox.meta().get("last_report_id")  # committed with every round, with or without a report
        if isinstance(last_meta, int):
            known = max(known, last_meta)
        self.reserved = _read_int(state_dir / RESERVE_FILE)
        self.last = max(_read_int(state_dir / ID_FILE), known if known else self.reserved)

    def next(self) -> int:
        """The next id; raises :class:`OSError` (nothing handed out) when the reserve cannot be raised."""
        candidate = max(self.last + 1, int(self.clock()))
        if candidate > self.reserved:
            reserve = candidate + RESERVE_AHEAD
            _write_int(self.state_dir / RESERVE_FILE, reserve)
            self.reserved = reserve
        self.last = candidate
        return candidate
