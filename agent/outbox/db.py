"""The outbox's SQLite plumbing: schema, opening, moving a damaged file aside, and transactions.

Transactions nest: only the outermost one issues ``BEGIN IMMEDIATE`` and ``COMMIT``,
so a caller can group several outbox writes (store a report, drop the oldest, save
the status meta) into one commit, and so into one fsync.

Each outermost transaction says whether it must be on disk when it returns:

- ``durable`` (``PRAGMA synchronous=FULL``): the WAL is fsynced at commit. For
  everything that creates, changes or ends a report under an id (store, supersede,
  drop, the reply's outcome): after the commit the report may be published, so the
  id and its bytes must survive a power loss.
- not durable (``synchronous=NORMAL``): the commit is written to the WAL (it
  survives kill -9, the OS has it) but not fsynced; a power loss can lose it until
  the next durable commit, whose fsync of the WAL makes every earlier frame durable
  too. Used for bookkeeping whose loss is harmless: publish attempts, the PUBACK
  flag, the status meta on its own. docs/OPERATIONS.md ("fsyncs per report") says why.

SQLite refuses to change ``synchronous`` inside a transaction, so the outermost
transaction decides; a durable write nested inside a non-durable one is a bug and
raises :class:`RuntimeError`.

Errors are SQLite's own, not wrapped: :class:`sqlite3.OperationalError` when the
file cannot be opened, read or written (disk full, I/O error, a lock held past the
timeout), :class:`sqlite3.DatabaseError` (its base class) when the file is not a
database or is damaged. A transaction whose statements or ``COMMIT`` fail is rolled
back before the error is raised again, so the next one starts clean.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (
    report_id INTEGER PRIMARY KEY,
    format TEXT NOT NULL,
    payload BLOB NOT NULL,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    first_sent_at REAL,
    delivered INTEGER NOT NULL DEFAULT 0,
    bytes_in INTEGER, bytes_out INTEGER, packets_in INTEGER, packets_out INTEGER
);
CREATE TABLE IF NOT EXISTS ledger (
    report_id INTEGER PRIMARY KEY,
    outcome TEXT NOT NULL,
    code TEXT,
    message TEXT,
    attempts INTEGER NOT NULL,
    created_at REAL NOT NULL,
    finished_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    sink TEXT NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS messages_by_sink ON messages (sink, seq);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


# The schema's version in ``PRAGMA user_version``: 0 is the outbox of 0.1.0 (the tables above, no
# auto_vacuum); 1 adds incremental auto_vacuum, so that the file can shrink back under its bound
# (agent.outbox.admission). A newer version than this code knows is refused, never moved aside.
SCHEMA_VERSION = 1


class NewerSchema(sqlite3.OperationalError):
    """The outbox was written by a newer defender-agent: this one must not touch it."""


def connect(path: Path) -> sqlite3.Connection:
    """Open ``path`` in WAL mode, check it, create the tables and bring the schema to :data:`SCHEMA_VERSION`.

    Raises :class:`sqlite3.OperationalError` when SQLite cannot open or write the file (:class:`NewerSchema`
    when a newer agent wrote it), and a plain :class:`sqlite3.DatabaseError` when it is not a database or
    fails ``PRAGMA quick_check``.
    """
    conn = sqlite3.connect(str(path), timeout=5.0, isolation_level=None)
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise NewerSchema(f"{path} has outbox schema {version}, newer than this agent's {SCHEMA_VERSION} "
                              "(a downgrade?): install the newer defender-agent again, or move the file aside")
        fresh = not conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        if fresh:
            conn.execute("PRAGMA auto_vacuum=INCREMENTAL")  # before the first table: no VACUUM needed
        conn.execute("PRAGMA journal_mode=WAL").fetchone()
        conn.execute("PRAGMA synchronous=FULL")
        row = conn.execute("PRAGMA quick_check").fetchone()
        if row is None or row[0] != "ok":
            raise sqlite3.DatabaseError(f"quick_check: {row[0] if row else 'no answer'}")
        conn.executescript(SCHEMA)
        if version < 1 and not fresh:  # 0.1.0's file: switch auto_vacuum on (takes one VACUUM, once)
            conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
            conn.execute("VACUUM")
        if version != SCHEMA_VERSION:
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    except BaseException:
        conn.close()
        raise
    return conn


def move_aside(path: Path) -> Path:
    """Rename ``path`` and its ``-wal``/``-shm`` files to ``<name>.<time>.corrupt``; raises :class:`OSError`."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    target = path.with_name(f"{path.name}.{stamp}.corrupt")
    for suffix in ("", "-wal", "-shm"):
        src = Path(str(path) + suffix)
        if src.exists():
            os.replace(src, Path(str(target) + suffix))
    return target


class Transactions:
    """Nesting transactions on one connection (one thread), with per-commit durability."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.depth = 0
        self.durable = True
        self._sync = "FULL"  # what connect() set

    def __call__(self, durable: bool) -> Transaction:
        return Transaction(self, durable)

    def begin(self, durable: bool) -> None:
        if self.depth == 0:
            wanted = "FULL" if durable else "NORMAL"
            if wanted != self._sync:
                self.conn.execute(f"PRAGMA synchronous={wanted}")
                self._sync = wanted
            self.conn.execute("BEGIN IMMEDIATE")
            self.durable = durable
        elif durable and not self.durable:
            raise RuntimeError("a durable outbox write inside a non-durable transaction")
        self.depth += 1

    def end(self, ok: bool) -> None:
        self.depth -= 1
        if self.depth != 0:
            return
        if ok:
            try:
                self.conn.execute("COMMIT")
                return
            except sqlite3.Error:
                # A COMMIT that failed (disk full, I/O error) can leave the transaction open; without a
                # rollback every later BEGIN fails ("cannot start a transaction within a transaction")
                # and the outbox never recovers when space returns.
                self._rollback()
                raise
        self._rollback()

    def _rollback(self) -> None:
        if self.conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):  # SQLite may already have rolled back on its own
                self.conn.execute("ROLLBACK")


class Transaction:
    def __init__(self, owner: Transactions, durable: bool) -> None:
        self.owner = owner
        self.durable = durable

    def __enter__(self) -> None:
        self.owner.begin(self.durable)

    def __exit__(self, kind: Any, value: Any, tb: Any) -> None:
        self.owner.end(kind is None)
