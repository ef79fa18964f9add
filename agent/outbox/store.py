"""The durable outbox and the ledger: SQLite in WAL mode in ``state_dir``.

A report enters ``pending`` before its first publish and leaves it in the same
transaction that writes its one final outcome to ``ledger`` and bumps the
outcome's counter: ``accepted``, ``rejected`` (with the service's code and
message), ``unanswered`` (published, no reply before a newer report went out or
within ``delivery.max_attempts``), ``superseded`` or ``dropped`` (with the reason). Counters survive
restarts. An unreadable database file is moved aside as ``*.corrupt`` and a
fresh one is started (counted as ``outbox_corrupt``).

Report ids are persisted here, not in a file of their own: a report's id is
committed with its row (the same transaction as the status meta, see
``Service._report_round``), and nothing is published before that commit.
``max_known_id`` (pending and ledger; the ledger trim keeps the newest rows) is
therefore at least every id that was ever sent; :mod:`agent.outbox.ids` starts
from it.

Errors: storage failures are not wrapped. Every method raises
:class:`sqlite3.OperationalError` when SQLite cannot read or write ``state_dir``
(disk full, I/O error, a file it cannot open, a lock held past the 5 s timeout); a
failed write leaves the outbox as it was before the transaction (see
:mod:`agent.outbox.db`), so the caller may retry later. Damage found after the
file was opened raises a plain :class:`sqlite3.DatabaseError` (the next
:meth:`Outbox.open` moves the file aside if its check finds the damage too).
:meth:`Outbox.open` also raises :class:`OSError` when ``state_dir`` cannot be
created or a damaged file cannot be moved aside. The scheduler counts
``OperationalError`` and ``OSError`` as storage errors (``STORAGE_ERRORS``).
``ValueError`` (an unknown outcome) and ``RuntimeError`` (a durable write inside a
non-durable transaction) are bugs of the caller.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from agent.catalog import PayloadFormat
from agent.outbox.db import Transaction, Transactions, connect, move_aside
from agent.report.model import NetworkStats
from agent.schema import TextEnum

DB_NAME = "outbox.sqlite3"
# What a full or failing state_dir raises: SQLite ("database or disk is full", "disk I/O error") and
# plain file writes (ENOSPC, EDQUOT, EIO). The loop survives them and tries again on the next round.
STORAGE_ERRORS = (sqlite3.OperationalError, OSError)
LEDGER_KEEP = 10000


class ReportOutcome(TextEnum):
    """A report's one final outcome (see above): the value in its ``ledger`` row and the name of its counter."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"
    UNANSWERED = "unanswered"
    SUPERSEDED = "superseded"
    DROPPED = "dropped"


@dataclass(frozen=True)
class Pending:
    report_id: int
    format: PayloadFormat
    payload: bytes
    created_at: float
    attempts: int
    next_attempt_at: float
    first_sent_at: Optional[float]
    delivered: bool
    network: Optional[NetworkStats]

    @classmethod
    def new(cls, report_id: int, format: PayloadFormat, payload: bytes, now: float,
            network: Optional[NetworkStats] = None) -> Pending:
        """A report just built: never published, due at once."""
        return cls(report_id=report_id, format=format, payload=payload, created_at=now, attempts=0,
                   next_attempt_at=now, first_sent_at=None, delivered=False, network=network)


@dataclass(frozen=True)
class LedgerEntry:
    report_id: int
    outcome: ReportOutcome
    code: Optional[str]
    message: Optional[str]
    attempts: int
    created_at: float
    finished_at: float


def _pending(row: Sequence[Any]) -> Pending:
    net = None if row[8] is None else NetworkStats(int(row[8]), int(row[9]), int(row[10]), int(row[11]))
    return Pending(report_id=int(row[0]), format=PayloadFormat(str(row[1])), payload=bytes(row[2]),
                   created_at=float(row[3]), attempts=int(row[4]), next_attempt_at=float(row[5]),
                   first_sent_at=None if row[6] is None else float(row[6]), delivered=bool(row[7]), network=net)


_PENDING_COLS = ("report_id, format, payload, created_at, attempts, next_attempt_at, first_sent_at, delivered, "
                 "bytes_in, bytes_out, packets_in, packets_out")


class Outbox:
    """All reads and writes of the outbox database. Used from one thread (the scheduler loop)."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path
        self._finished_since_trim = 0
        self._transactions = Transactions(conn)

    @classmethod
    def open(cls, state_dir: Path, logger: logging.Logger) -> Outbox:
        """Open (or create) the outbox; a damaged file is moved aside and counted, a failing disk is raised.

        Raises :class:`sqlite3.OperationalError` when the file cannot be opened or written (disk full, I/O
        error): that says nothing about the file's contents, so the outbox and its pending reports are left
        where they are. :class:`OSError` when ``state_dir`` cannot be created or a damaged file moved aside.
        """
        state_dir.mkdir(parents=True, exist_ok=True)
        path = state_dir / DB_NAME
        try:
            return cls(connect(path), path)
        except sqlite3.OperationalError:
            raise
        except sqlite3.DatabaseError as exc:  # not a database, malformed, failed quick_check
            target = move_aside(path)
            logger.error("Outbox %s is unreadable (%s); moved it to %s and started a fresh one", path, exc, target)
            box = cls(connect(path), path)
            box.bump("outbox_corrupt")
            return box

    def close(self) -> None:
        self.conn.close()

    # -- pending reports ------------------------------------------------------------------

    def pending(self) -> List[Pending]:
        rows = self.conn.execute(f"SELECT {_PENDING_COLS} FROM pending ORDER BY report_id").fetchall()
        return [_pending(r) for r in rows]

    def get(self, report_id: int) -> Optional[Pending]:
        row = self.conn.execute(f"SELECT {_PENDING_COLS} FROM pending WHERE report_id=?", (report_id,)).fetchone()
        return None if row is None else _pending(row)

    def pending_bytes(self) -> int:
        return int(self.conn.execute("SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM pending").fetchone()[0])

    def pending_ids(self) -> List[int]:
        """The pending report ids, oldest first, without reading their payloads (the loop asks every turn)."""
        return [int(r[0]) for r in self.conn.execute("SELECT report_id FROM pending ORDER BY report_id")]

    def pending_count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM pending").fetchone()[0])

    def max_known_id(self) -> int:
        """The highest id this outbox ever committed (0 for a fresh outbox)."""
        row = self.conn.execute(
            "SELECT MAX(m) FROM (SELECT MAX(report_id) AS m FROM pending UNION ALL SELECT MAX(report_id) FROM ledger)"
        ).fetchone()
        return int(row[0] or 0)

    def add(self, report: Pending, drop_ids: Iterable[int] = (), drop_reason: str = "") -> None:
        """Store a new report; in the same transaction drop ``drop_ids`` (oldest first) with ``drop_reason``."""
        with self._tx():
            for rid in drop_ids:
                self._finish(rid, ReportOutcome.DROPPED, None, drop_reason, report.created_at)
            self._insert(report)

    def drop(self, report_ids: Iterable[int], reason: str, now: float) -> None:
        with self._tx():
            for rid in report_ids:
                self._finish(rid, ReportOutcome.DROPPED, None, reason, now)

    def supersede_into(self, replaced: Iterable[Tuple[int, str]], new: Optional[Pending], now: float) -> None:
        """Mark ``replaced`` (id, reason) superseded and store ``new`` (if given), in one transaction."""
        with self._tx():
            if new is not None:
                self.conn.execute("DELETE FROM pending WHERE report_id=?", (new.report_id,))
                self._insert(new)
            for rid, reason in replaced:
                self._finish(rid, ReportOutcome.SUPERSEDED, None, reason, now)

    def _insert(self, r: Pending) -> None:
        net = (r.network.bytes_in, r.network.bytes_out, r.network.packets_in, r.network.packets_out) if r.network else (None,) * 4
        self.conn.execute(
            f"INSERT INTO pending ({_PENDING_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (r.report_id, r.format, r.payload, r.created_at, r.attempts, r.next_attempt_at, r.first_sent_at,
             int(r.delivered), *net),
        )

    def record_attempt(self, report_id: int, now: float, next_attempt_at: float) -> None:
        """Not durable on its own (see agent.outbox.db): a lost attempt count only changes resend timing."""
        with self._tx(durable=False):
            self.conn.execute(
                "UPDATE pending SET attempts=attempts+1, next_attempt_at=?, first_sent_at=COALESCE(first_sent_at, ?) "
                "WHERE report_id=?",
                (next_attempt_at, now, report_id),
            )
            self._bump("published")

    def mark_delivered(self, report_id: int) -> None:
        """Not durable on its own: a lost flag is the lost-PUBACK case of docs/OPERATIONS.md ("Why it works this way")."""
        with self._tx(durable=False):
            self.conn.execute("UPDATE pending SET delivered=1 WHERE report_id=?", (report_id,))

    # -- outcomes -------------------------------------------------------------------------

    def finish(self, report_id: int, outcome: ReportOutcome, code: Optional[str], message: Optional[str], now: float) -> bool:
        """Move a pending report to the ledger. False when it was not pending (nothing changes)."""
        with self._tx():
            return self._finish(report_id, outcome, code, message, now)

    def _finish(self, report_id: int, outcome: ReportOutcome, code: Optional[str], message: Optional[str],
                now: float) -> bool:
        outcome = ReportOutcome(outcome)  # ValueError for any other string: a bug of the caller
        row = self.conn.execute("SELECT attempts, created_at FROM pending WHERE report_id=?", (report_id,)).fetchone()
        if row is None:
            return False
        self.conn.execute("DELETE FROM pending WHERE report_id=?", (report_id,))
        self.conn.execute(
            "INSERT OR REPLACE INTO ledger (report_id, outcome, code, message, attempts, created_at, finished_at) "
            "VALUES (?,?,?,?,?,?,?)",
            (report_id, outcome, code, message, int(row[0]), float(row[1]), now),
        )
        self._bump(outcome)
        self._finished_since_trim += 1
        if self._finished_since_trim >= 100:
            self._finished_since_trim = 0
            self.conn.execute(
                "DELETE FROM ledger WHERE report_id < (SELECT report_id FROM ledger ORDER BY report_id DESC "
                "LIMIT 1 OFFSET ?)",
                (LEDGER_KEEP,),
            )
        return True

    def record_unsent(self, report_id: int, outcome: ReportOutcome, message: str, now: float) -> None:
        """Ledger entry for an id that never became a pending report (e.g. the build failed)."""
        with self._tx():
            self.conn.execute(
                "INSERT OR REPLACE INTO ledger (report_id, outcome, code, message, attempts, created_at, "
                "finished_at) VALUES (?,?,?,?,?,?,?)",
                (report_id, outcome, None, message, 0, now, now),
            )
            self._bump(outcome)

    def outcome_of(self, report_id: int) -> Optional[ReportOutcome]:
        row = self.conn.execute("SELECT outcome FROM ledger WHERE report_id=?", (report_id,)).fetchone()
        return None if row is None else ReportOutcome(str(row[0]))

    def ledger(self, limit: int = 1000, outcome: Optional[ReportOutcome] = None) -> List[LedgerEntry]:
        sql = "SELECT report_id, outcome, code, message, attempts, created_at, finished_at FROM ledger"
        args: Tuple[Any, ...] = ()
        if outcome:
            sql += " WHERE outcome=?"
            args = (outcome,)
        rows = self.conn.execute(sql + " ORDER BY report_id DESC LIMIT ?", (*args, limit)).fetchall()
        return [LedgerEntry(int(r[0]), ReportOutcome(str(r[1])), r[2], r[3], int(r[4]), float(r[5]), float(r[6]))
                for r in rows]

    # -- counters and meta ----------------------------------------------------------------

    def bump(self, name: str, by: int = 1, durable: bool = True) -> None:
        with self._tx(durable):
            self._bump(name, by)

    def _bump(self, name: str, by: int = 1) -> None:
        self.conn.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value=value+excluded.value",
            (name, by),
        )

    def counters(self) -> Dict[str, int]:
        return {str(k): int(v) for k, v in self.conn.execute("SELECT name, value FROM counters")}

    def set_meta(self, values: Mapping[str, Any]) -> None:
        """Status values; durable only as part of a durable :meth:`transaction` (e.g. with the report)."""
        with self._tx(durable=False):
            for key, value in values.items():
                self.conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value)))

    def meta(self) -> Dict[str, Any]:
        return {str(k): json.loads(v) for k, v in self.conn.execute("SELECT key, value FROM meta")}

    def transaction(self, durable: bool = True) -> Transaction:
        """Group several writes into one commit (one fsync when ``durable``); see :mod:`agent.outbox.db`."""
        return self._transactions(durable)

    def _tx(self, durable: bool = True) -> Transaction:
        return self._transactions(durable)


def open_readonly(state_dir: Path) -> Optional[Outbox]:
    """The outbox for `status`, without creating or changing anything; ``None`` when there is none."""
    path = state_dir / DB_NAME
    if not path.exists():
        return None
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0, isolation_level=None)
        conn.execute("SELECT COUNT(*) FROM pending").fetchone()
    except sqlite3.DatabaseError:
        return None
    return Outbox(conn, path)
