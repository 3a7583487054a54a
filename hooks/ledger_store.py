"""Where ledger records live: SQLite under DATA_DIR, or PostgreSQL when DATABASE_URL is set,
and the background writer that puts them there.

`LedgerWriter` owns one daemon thread per worker process fed by a bounded queue, so a
request never waits for the disk. The thread writes in batches: after the first record of a
batch it lingers `linger` seconds (0.2 s) for more, then writes them in one transaction, so
a busy worker commits about five times a second instead of once per request (a commit costs
more CPU than the rows in it). `close` (lifespan shutdown) writes what is queued at once; a
worker that is killed loses what is queued (at most the last 0.2 s at low load). SQLite runs
in WAL mode with synchronous=NORMAL: a commit survives the process being killed; only a power
cut or kernel crash can lose the last commits.

Columns added in later releases (ADDED_COLUMNS) are added to an existing table with ALTER TABLE
ADD COLUMN when a writer connects; reading fills columns an older ledger lacks with None.

A write that fails (read-only or full disk, a data dir
that cannot be created, a database that is down) drops that batch: the error is logged
(at most once a minute per kind, with the number of records lost) and counted in
`gateway_ledger_errors_total`. The next batch tries again from a fresh connection.
`gateway report` reads through the same `Store`.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

log = logging.getLogger("gateway.ledger")

TABLE = "gateway_requests"
COLUMNS = (
    "request_id", "ts", "key_hash", "requested_model", "served_model", "route", "reason", "fallback_cause",
    "prompt_tokens", "completion_tokens", "reasoning_tokens", "tokens_counted", "latency_ms", "ttft_ms",
    "cost_usd", "saved_usd", "status", "error_type", "stream", "cache", "cache_saved_usd",
)
# Columns added after the first release: added to an existing table when a writer connects.
ADDED_COLUMNS = (("cache", "TEXT"), ("cache_saved_usd", "DOUBLE PRECISION"))
_TYPES = {"ts": "DOUBLE PRECISION NOT NULL", "latency_ms": "DOUBLE PRECISION", "ttft_ms": "DOUBLE PRECISION",
          "cost_usd": "DOUBLE PRECISION", "saved_usd": "DOUBLE PRECISION", "request_id": "TEXT PRIMARY KEY",
          "cache_saved_usd": "DOUBLE PRECISION"}
_INTS = {"prompt_tokens", "completion_tokens", "reasoning_tokens", "tokens_counted", "status", "stream"}
SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} ("
    + ", ".join(f"{c} {_TYPES.get(c, 'INTEGER' if c in _INTS else 'TEXT')}" for c in COLUMNS) + ")",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_ts ON {TABLE} (ts)",
)
SQLITE_FILE = "ledger.sqlite3"


class Store:
    """A connection factory plus the two statements the ledger needs."""

    placeholder = "?"
    location = ""

    def connect(self):
        raise NotImplementedError

    def insert_sql(self) -> str:
        marks = ", ".join([self.placeholder] * len(COLUMNS))
        return f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES ({marks}) ON CONFLICT (request_id) DO NOTHING"

    def insert(self, conn, rows: Sequence[tuple]) -> None:
        with conn:  # sqlite3: one transaction per batch
            conn.executemany(self.insert_sql(), rows)

    def rows_since(self, conn, since: float) -> Iterator[dict]:
        """Every column of COLUMNS (None for one an older ledger does not have yet)."""
        cursor = conn.cursor()
        cursor.execute(f"SELECT * FROM {TABLE} WHERE ts >= {self.placeholder} ORDER BY ts", (since,))
        names = [d[0] for d in cursor.description]
        for row in cursor:
            found = dict(zip(names, row))
            yield {c: found.get(c) for c in COLUMNS}

    def migrate(self, conn) -> None:
        """Add the columns an older ledger lacks (additive only: old rows read them as NULL)."""
        for name, kind in ADDED_COLUMNS:
            if name not in self._columns(conn):
                try:
                    conn.execute(f"ALTER TABLE {TABLE} ADD COLUMN {name} {kind}")
                except Exception:
                    if name not in self._columns(conn):  # else another worker added it first
                        raise

    @staticmethod
    def _columns(conn) -> set[str]:
        cursor = conn.cursor()
        cursor.execute(f"SELECT * FROM {TABLE} WHERE 1 = 0")
        return {d[0] for d in cursor.description}


class SqliteStore(Store):
    def __init__(self, path: Path, pragmas: Sequence[str] = ()) -> None:
        self.path = path
        self.location = str(path)
        self.pragmas = pragmas

    def connect(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=10)
        try:
            conn.execute("PRAGMA journal_mode=WAL")  # several workers write, `gateway report` reads
            conn.execute("PRAGMA synchronous=NORMAL")  # no fsync per commit; WAL keeps the file consistent
            for pragma in self.pragmas:
                conn.execute(pragma)
            for statement in SCHEMA:
                conn.execute(statement)
            self.migrate(conn)
            conn.commit()
        except Exception:
            conn.close()
            raise
        return conn

    def open_for_reading(self):
        if not self.path.is_file():
            raise FileNotFoundError(f"no ledger at {self.path} yet: `gateway serve` writes it under DATA_DIR")
        return sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10)


class PostgresStore(Store):
    placeholder = "%s"

    def __init__(self, url: str) -> None:
        self.url = url
        self.location = "PostgreSQL (DATABASE_URL)"

    def connect(self):
        import psycopg

        conn = psycopg.connect(self.url, connect_timeout=5, autocommit=True)
        try:
            for statement in SCHEMA:
                conn.execute(statement)
            self.migrate(conn)
        except Exception:
            conn.close()
            raise
        return conn

    def insert(self, conn, rows: Sequence[tuple]) -> None:
        with conn.transaction(), conn.cursor() as cursor:
            cursor.executemany(self.insert_sql(), rows)

    open_for_reading = connect


def open_store(settings, pragmas: Sequence[str] = ()) -> Store:
    """PostgreSQL when DATABASE_URL is set, else SQLite at DATA_DIR/ledger.sqlite3."""
    if settings.database_url is not None:
        return PostgresStore(settings.database_url.get_secret_value())
    return SqliteStore(Path(settings.data_dir) / SQLITE_FILE, pragmas)


_STOP = object()


class LedgerWriter:
    """Queue + background thread; `put` never blocks and never raises."""

    def __init__(self, store: Store, on_error: Callable[[str, int], None], max_queue: int = 10_000,
                 batch: int = 500, log_every: float = 60.0, linger: float = 0.2) -> None:
        self.store = store
        self.linger = linger
        self.on_error = on_error
        self.batch = batch
        self.log_every = log_every
        self.written = 0
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._conn = None
        self._last_logged: dict[str, float] = {}
        self._lost: dict[str, int] = {}

    def put(self, row: tuple) -> None:
        if self._thread is None:
            self._start()
        try:
            self._queue.put_nowait(row)
        except queue.Full:
            self._failed("queue-full", 1, "the ledger queue is full (the database is too slow or down)")

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued (up to `timeout` seconds), then stop the thread."""
        if self._thread is None:
            return
        self._closing.set()  # cut the linger short
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            pass
        self._thread.join(timeout)
        self._thread = None

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="gateway-ledger-writer", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is not _STOP and self._queue.qsize() < self.batch:
                self._closing.wait(self.linger)  # let the batch fill up
            rows = [] if item is _STOP else [item]
            while item is not _STOP and len(rows) < self.batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not _STOP:
                    rows.append(item)
            if rows:
                self._write(rows)
            if item is _STOP:
                self._disconnect()
                self._closing.clear()
                return

    def _write(self, rows: list[tuple]) -> None:
        try:
            if self._conn is None:
                self._conn = self.store.connect()
            self.store.insert(self._conn, rows)
            self.written += len(rows)
        except Exception as exc:  # read-only or full disk, database down, ...: drop the batch, keep serving
            self._disconnect()
            self._failed("write", len(rows), f"cannot write to the ledger at {self.store.location}: "
                         f"{type(exc).__name__}: {exc}")

    def _disconnect(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass
            self._conn = None

    def _failed(self, kind: str, records: int, message: str) -> None:
        self.on_error(kind, records)
        self._lost[kind] = self._lost.get(kind, 0) + records
        now = time.monotonic()
        if now - self._last_logged.get(kind, -self.log_every) >= self.log_every:
            self._last_logged[kind] = now
            log.error("%s; %d request record(s) lost (requests are still served)", message, self._lost.pop(kind),
                      extra={"ledger_error": kind})
