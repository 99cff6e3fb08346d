"""The journal's database: SQLite in WAL mode, one file a desk names.

Schema (``SCHEMA_VERSION``; see docs/journal.md):

``epochs``
    one row per segment the journal recorded: ``epoch``, ``segment`` (its name),
    ``started_ns`` (wall clock), ``recovered_from`` (the last event id it was rebuilt from).
``events``
    one row per event, in commit order (``id``): ``epoch`` and ``seq`` (its position in that
    segment's ring; NULL for rows the recorder or a recovery wrote itself), ``time_ns``
    (wall clock), ``kind`` (:class:`bot4.shm.events.EventKind` name), ``pid``, ``symbol``,
    ``ref``, ``code``, ``f0`` .. ``f3`` (the event's figures), ``text``; and the state the
    event left: ``position``, ``avg_price``, ``realized``, ``mark`` (of ``symbol``), ``cash``,
    ``unrealized``, ``peak``, ``day_start``, ``day_id``, ``equity_set``, ``trading``;
    ``detail`` (JSON, for limits).
``cursors``
    per epoch, the next ring position to record and the lost-record count last snapshotted.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from bot4.errors import ConfigError, JournalError

__all__ = ["COLUMNS", "ORDERS", "SCHEMA_VERSION", "JournalStore", "torn_tail"]

log = logging.getLogger("bot4.journal")

SCHEMA_VERSION = 1
COLUMNS = (
    "epoch",
    "seq",
    "time_ns",
    "kind",
    "pid",
    "symbol",
    "ref",
    "code",
    "f0",
    "f1",
    "f2",
    "f3",
    "position",
    "avg_price",
    "realized",
    "mark",
    "cash",
    "unrealized",
    "peak",
    "day_start",
    "day_id",
    "equity_set",
    "trading",
    "text",
    "detail",
)
"""The columns of ``events`` after ``id``, in the order rows are written."""

ORDERS = "kind IN ('RESERVE', 'FILL', 'RELEASE', 'HELD', 'ORDER')"
"""SQL: the rows of orders, the only ones indexed (by kind, epoch and reservation): a query of
them names this term (alias-prefixed) for SQLite to use the index; marks cost no index write."""

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS epochs(
    epoch INTEGER PRIMARY KEY, segment TEXT NOT NULL, started_ns INTEGER NOT NULL, recovered_from INTEGER);
CREATE TABLE IF NOT EXISTS events(
    id INTEGER PRIMARY KEY,
    epoch INTEGER NOT NULL, seq INTEGER, time_ns INTEGER NOT NULL, kind TEXT NOT NULL, pid INTEGER,
    symbol TEXT, ref INTEGER, code INTEGER, f0 REAL, f1 REAL, f2 REAL, f3 REAL,
    position REAL, avg_price REAL, realized REAL, mark REAL,
    cash REAL, unrealized REAL, peak REAL, day_start REAL, day_id INTEGER, equity_set INTEGER, trading INTEGER,
    text TEXT, detail TEXT);
CREATE INDEX IF NOT EXISTS events_orders ON events(kind, epoch, ref) WHERE {ORDERS};
CREATE TABLE IF NOT EXISTS cursors(epoch INTEGER PRIMARY KEY, next INTEGER NOT NULL, lost_seen INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('schema', '{SCHEMA_VERSION}');
"""
_INSERT = f"INSERT INTO events({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"


def torn_tail(path: str | os.PathLike[str]) -> int:
    """Bytes at the end of ``path``'s write-ahead log that are not a whole frame (a write
    cut short by a crash or power cut; SQLite ignores them), 0 if none or no log."""
    wal = Path(f"{os.fspath(path)}-wal")
    try:
        size = wal.stat().st_size
        with wal.open("rb") as f:
            header = f.read(32)
    except OSError:
        return 0
    if size <= 32 or len(header) < 32:
        return 0
    page = int.from_bytes(header[8:12], "big")
    page = 65536 if page == 1 else page
    if page < 512:
        return 0
    return (size - 32) % (24 + page)


def _reader(path: Path) -> sqlite3.Connection:
    """A connection that never writes rows. Opened for writing where the file allows, so that
    it can recover a log whose writer died mid-commit (a read-only one would read the journal
    as it was before that commit); read-only otherwise."""
    db = None
    try:
        db = sqlite3.connect(f"file:{path}?mode=rw", uri=True, isolation_level=None, timeout=5.0)
        db.execute("PRAGMA query_only=ON")
        db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        return db
    except sqlite3.OperationalError:
        if db is not None:
            db.close()
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)


class JournalStore:
    """One connection to a journal database (created with its schema if new).

    Args:
        path: the database file.
        synchronous: SQLite's ``synchronous`` for writes: ``"FULL"`` (default) makes every
            committed batch survive a power cut; ``"NORMAL"`` survives a crash of any process
            but may lose the last batches to a power cut.
        max_bytes: refuse to grow the file past this size (the journal reports "full"), or None.
        read_only: open for queries only.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "FULL",
        max_bytes: int | None = None,
        read_only: bool = False,
    ) -> None:
        if synchronous not in ("FULL", "NORMAL", "EXTRA"):
            raise ConfigError("synchronous", f"must be 'FULL', 'NORMAL' or 'EXTRA', got {synchronous!r}")
        if max_bytes is not None and (isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1):
            raise ConfigError("max_bytes", f"must be a positive integer or None, got {max_bytes!r}")
        self.path = Path(path)
        if read_only and not self.path.exists():
            raise JournalError(f"no journal at {self.path}")
        torn = torn_tail(self.path)
        if torn:
            log.warning(
                "journal %s: its last write was cut short (%d bytes of a partial frame); "
                "it is skipped and the journal is read up to its last complete commit",
                self.path,
                torn,
            )
        try:
            if read_only:
                self._db = _reader(self.path)
            else:
                self._db = sqlite3.connect(self.path, isolation_level=None, timeout=5.0)
                tables = {name for (name,) in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                if tables and "meta" not in tables:
                    self._db.close()
                    raise JournalError(f"{self.path} is a database of something else, not a bot4 journal")
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute(f"PRAGMA synchronous={synchronous}")
                self._db.executescript(_SCHEMA)
            if max_bytes is not None:
                page = self._db.execute("PRAGMA page_size").fetchone()[0]
                self._db.execute(f"PRAGMA max_page_count={max(1, max_bytes // page)}")
            schema = self._db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        except sqlite3.Error as e:
            raise JournalError(f"cannot open the journal {self.path}: {e}") from e
        if schema is None or schema[0] != str(SCHEMA_VERSION):
            self._db.close()
            raise JournalError(f"{self.path} is not a bot4 journal of schema {SCHEMA_VERSION} (found {schema})")

    @property
    def db(self) -> sqlite3.Connection:
        """The connection (for queries)."""
        return self._db

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def set_max_bytes(self, max_bytes: int | None) -> None:
        """Change the size cap (None: no cap beyond SQLite's)."""
        page = self._db.execute("PRAGMA page_size").fetchone()[0]
        pages = 1 << 30 if max_bytes is None else max(1, max_bytes // page)
        self._db.execute(f"PRAGMA max_page_count={pages}")

    # ------------------------------------------------------------------ writes

    def new_epoch(self, segment: str, recovered_from: int | None) -> int:
        """Register a segment the journal starts recording; its epoch number."""
        with self._tx():
            cur = self._db.execute(
                "INSERT INTO epochs(segment, started_ns, recovered_from) VALUES (?, ?, ?)",
                (segment, time.time_ns(), recovered_from),
            )
            epoch = cur.lastrowid
            self._db.execute("INSERT INTO cursors VALUES (?, 0, 0)", (epoch,))
        assert epoch is not None
        return epoch

    def cursor(self, epoch: int) -> tuple[int, int]:
        """(next ring position to record, lost records last snapshotted) of ``epoch``."""
        row = self._db.execute("SELECT next, lost_seen FROM cursors WHERE epoch=?", (epoch,)).fetchone()
        if row is None:
            raise JournalError(f"the journal {self.path} has no epoch {epoch}")
        return int(row[0]), int(row[1])

    def append(self, epoch: int, rows: Sequence[Sequence[object]], next_position: int, lost_seen: int) -> None:
        """Write ``rows`` (``COLUMNS`` order) and move ``epoch``'s cursor, in one commit."""
        with self._tx():
            self._db.executemany(_INSERT, rows)
            self._db.execute("UPDATE cursors SET next=?, lost_seen=? WHERE epoch=?", (next_position, lost_seen, epoch))

    def insert(self, rows: Iterable[Sequence[object]]) -> None:
        """Write ``rows`` in one commit."""
        with self._tx():
            self._db.executemany(_INSERT, rows)

    def _tx(self) -> _Tx:
        return _Tx(self._db)

    def last_id(self) -> int:
        """The id of the last event (0: none)."""
        row = self._db.execute("SELECT MAX(id) FROM events").fetchone()
        return int(row[0] or 0)


class _Tx:
    """``BEGIN IMMEDIATE`` .. ``COMMIT`` (``ROLLBACK`` on any error)."""

    __slots__ = ("_db",)

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            try:
                self._db.execute("COMMIT")
                return
            except BaseException:
                self._rollback()
                raise
        self._rollback()

    def _rollback(self) -> None:
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass
