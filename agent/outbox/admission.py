"""One admission policy over everything the outbox holds, in bytes on disk.

Everything a round stores (a pending report, a topic sink's message, a violation event)
shares one bound, ``delivery.max_outbox_bytes``, measured as SQLite measures the file:
the pages in use (``page_count - freelist_count`` times ``page_size``), so payloads,
row and index overhead and the ledger all count. After a write, :meth:`Admission.enforce`
(inside the same transaction) brings the pages in use back under the bound:

1. the ledger's oldest entries go first (history, never less than :data:`LEDGER_FLOOR`
   entries);
2. then the oldest item of any tenant, reports and messages alike by creation time,
   except the one just written (one report, one message always fits): a report ends
   ``dropped`` in the ledger with the reason, a message is counted ``sink.NAME.dropped``.

While the filesystem has less than ``delivery.min_free_disk`` free, the bound is what is
in use before the write: the outbox stops growing and the oldest make room for the new.

On disk the file stays within the bound plus a stated slack: the database never grows
past the pages in use at the end of a transaction plus what one transaction adds
before it is enforced (``auto_vacuum=INCREMENTAL`` returns pages when the bound is
lowered), and the WAL is checkpointed every :func:`wal_pages` pages and truncated to
that size (``wal_autocheckpoint``, ``journal_size_limit``), an eighth of the bound
(at least 64 KiB, at most 4 MiB). docs/OPERATIONS.md ("The outbox's bound") states the slack and
the measured figures.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from agent.outbox.messages import MessageOutcome, counter_name
from agent.outbox.store import Outbox

LEDGER_FLOOR = 100  # ledger entries kept whatever the bound (status shows the recent outcomes)
WAL_MIN_PAGES = 16
WAL_MAX_BYTES = 4 * 1024 * 1024


def free_disk(path: Path) -> int:
    try:
        stat = os.statvfs(path)
    except OSError:
        return 1 << 62
    return int(stat.f_bavail * stat.f_frsize)


def wal_pages(cap: int, page_size: int) -> int:
    """The WAL's checkpoint threshold (and truncation size) in pages, for a bound of ``cap`` bytes."""
    return max(WAL_MIN_PAGES, min(WAL_MAX_BYTES, cap // 8) // page_size)


@dataclass
class Dropped:
    """What one :meth:`Admission.enforce` dropped: report ids, and messages per sink."""

    reports: List[int] = field(default_factory=list)
    messages: Dict[str, int] = field(default_factory=dict)
    reason: str = ""

    def __bool__(self) -> bool:
        return bool(self.reports or self.messages)


class Admission:
    def __init__(self, outbox: Outbox, state_dir: Path, logger: logging.Logger,
                 disk_free: Callable[[Path], int] = free_disk) -> None:
        self.outbox = outbox
        self.conn = outbox.conn
        self.state_dir = state_dir
        self.log = logger
        self.disk_free = disk_free
        self.cap = 16 * 1024 * 1024
        self.min_free = 0
        self.page_size = int(self.conn.execute("PRAGMA page_size").fetchone()[0])
        self._dropping = False

    def configure(self, cap: int, min_free: int, now: Optional[float] = None) -> None:
        """Take the bound (at start and on reload) and size the WAL for it; a lower bound is applied at once."""
        self.cap, self.min_free = cap, min_free
        pages = wal_pages(cap, self.page_size)
        self.conn.execute(f"PRAGMA wal_autocheckpoint={pages}").fetchone()
        self.conn.execute(f"PRAGMA journal_size_limit={pages * self.page_size}").fetchone()
        if self.in_use() > cap:
            with self.outbox.transaction():
                self.enforce(None, time.time() if now is None else now)
        self.compact()

    def in_use(self) -> int:
        """Bytes of the pages in use (the current transaction's view)."""
        count = int(self.conn.execute("PRAGMA page_count").fetchone()[0])
        free = int(self.conn.execute("PRAGMA freelist_count").fetchone()[0])
        return (count - free) * self.page_size

    def file_bytes(self) -> int:
        return int(self.conn.execute("PRAGMA page_count").fetchone()[0]) * self.page_size

    def budget(self, before: int) -> Tuple[int, str]:
        """The bound for this write and its reason; ``before`` is what was in use before the write."""
        if self.min_free and self.disk_free(self.state_dir) < self.min_free:
            return (min(self.cap, before),
                    f"disk nearly full (under {self.min_free} bytes free in {self.state_dir})")
        return self.cap, f"outbox full (cap {self.cap} bytes)"

    def enforce(self, keep: Optional[Tuple[str, int]], now: float, before: Optional[int] = None) -> Dropped:
        """Drop the oldest until the pages in use fit the bound; call inside the writing transaction.

        ``keep`` is the item just written (``("report", id)`` or ``("message", seq)``), never dropped;
        ``before`` the bytes in use before that write (for the free-disk rule)."""
        used = self.in_use()
        cap, reason = self.budget(used if before is None else before)
        dropped = Dropped(reason=reason)
        for _ in range(100000):  # bounded: every turn removes a row or ends
            if used <= cap:
                break
            if not self._trim_ledger() and not self._drop_oldest(keep, reason, now, dropped):
                break
            used = self.in_use()
        self._log(dropped)
        return dropped

    def _trim_ledger(self) -> bool:
        """Halve the ledger (down to LEDGER_FLOOR entries); False when there is nothing to trim."""
        total = int(self.conn.execute("SELECT COUNT(*) FROM ledger").fetchone()[0])
        if total <= LEDGER_FLOOR:
            return False
        remove = max(1, (total - LEDGER_FLOOR + 1) // 2)
        self.conn.execute("DELETE FROM ledger WHERE report_id IN (SELECT report_id FROM ledger ORDER BY report_id "
                          "LIMIT ?)", (remove,))
        return True

    def _drop_oldest(self, keep: Optional[Tuple[str, int]], reason: str, now: float, dropped: Dropped) -> bool:
        kept_report = keep[1] if keep and keep[0] == "report" else None
        kept_message = keep[1] if keep and keep[0] == "message" else None
        newest_report = self.conn.execute("SELECT MAX(report_id) FROM pending").fetchone()[0]
        report = self.conn.execute(  # the newest pending report always stays: one report always fits
            "SELECT report_id, created_at FROM pending WHERE report_id IS NOT ? AND report_id IS NOT ? "
            "ORDER BY report_id LIMIT 1", (kept_report, newest_report)).fetchone()
        message = self.conn.execute(
            "SELECT seq, created_at, sink FROM messages WHERE seq IS NOT ? ORDER BY seq LIMIT 1",
            (kept_message,)).fetchone()
        if report is None and message is None:
            return False
        if message is None or (report is not None and float(report[1]) <= float(message[1])):
            self.outbox.drop([int(report[0])], reason, now)
            dropped.reports.append(int(report[0]))
            return True
        self.conn.execute("DELETE FROM messages WHERE seq=?", (int(message[0]),))
        self.outbox.bump(counter_name(str(message[2]), MessageOutcome.DROPPED))
        dropped.messages[str(message[2])] = dropped.messages.get(str(message[2]), 0) + 1
        return True

    def _log(self, dropped: Dropped) -> None:
        """One line per burst of drops (the first), then counted only, until a write needs no drop."""
        if dropped and not self._dropping:
            parts = []
            if dropped.reports:
                ids = dropped.reports
                parts.append(f"{len(ids)} oldest pending report(s) "
                             f"({'id ' + str(ids[0]) if len(ids) == 1 else f'ids {min(ids)}..{max(ids)}'})")
            parts += [f"{n} oldest message(s) of sink {sink!r}" for sink, n in sorted(dropped.messages.items())]
            self.log.warning("Dropped %s: %s; further drops in this burst are counted, not logged",
                             " and ".join(parts), dropped.reason)
        self._dropping = bool(dropped)

    def compact(self) -> None:
        """Give free pages back to the filesystem when the file is over the bound (not durable on its own)."""
        if self.file_bytes() > self.cap and not self.conn.in_transaction:
            self.conn.executescript("PRAGMA incremental_vacuum;")  # runs it to the end (execute steps once)
