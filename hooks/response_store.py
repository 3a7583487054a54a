"""Stored Responses API responses, in the ledger's database (hooks.ledger_store: SQLite under
DATA_DIR, or PostgreSQL when DATABASE_URL is set), table `gateway_responses`.

One row per response a client may continue (`previous_response_id`) or read back
(`GET /v1/responses/{id}`): the response as the client got it, the conversation that led to it
(the input items, the previous turns' included), the key that created it (sha256, never the
key) and when. A key reads only its own rows: another key's id answers as not found.
Rows older than `gateway_settings.response_retention_days` are never read and are deleted
(at most once an hour, on a write).

Reads and writes run on one thread per worker process that owns the connection (a request
awaits them: a client may send the next turn the moment it has the answer, so the row must be
there before the answer is complete).

How it fails: a database that cannot be opened or written raises `StoreUnavailable`, which the
callers turn into a logged error (saving) or a 503 saying so (reading); requests that do not use
stored responses are never affected.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from hooks.ledger_store import Store

log = logging.getLogger("gateway.responses")

TABLE = "gateway_responses"
SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} (id TEXT PRIMARY KEY, key_hash TEXT, created_at DOUBLE PRECISION NOT NULL, "
    "body TEXT NOT NULL, conversation TEXT NOT NULL)",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_created ON {TABLE} (created_at)",
)
PURGE_EVERY_SECONDS = 3600.0


class StoreUnavailable(Exception):
    pass


@dataclass(frozen=True)
class Stored:
    id: str
    body: dict  # the response object as the client got it
    conversation: list  # the input items that led to it, earlier turns included


class ResponseStore:
    def __init__(self, store: Store, retention_days: float) -> None:
        self.store = store
        self.retention = retention_days * 86400.0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gateway-responses")
        self._conn = None
        self._purged = 0.0

    async def save(self, key_hash: str | None, body: dict, conversation: list) -> None:
        await self._run(self._save, key_hash, body, conversation)

    async def get(self, key_hash: str | None, response_id: str) -> Stored | None:
        return await self._run(self._get, key_hash, response_id)

    async def delete(self, key_hash: str | None, response_id: str) -> bool:
        return await self._run(self._delete, key_hash, response_id)

    async def _run(self, fn, *args):
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        except Exception as exc:
            self._disconnect()
            raise StoreUnavailable(
                f"the response store at {self.store.location} failed: {type(exc).__name__}: {exc}"
            ) from exc

    def _connection(self):
        if self._conn is None:
            conn = self.store.connect()
            for statement in SCHEMA:
                conn.execute(statement)
            if hasattr(conn, "commit"):
                conn.commit()
            self._conn = conn
        return self._conn

    def _sql(self, text: str) -> str:
        return text.replace("?", self.store.placeholder)

    def _execute(self, sql: str, params: tuple) -> object:
        conn = self._connection()
        cursor = conn.cursor()
        cursor.execute(self._sql(sql), params)
        return cursor

    def _commit(self) -> None:
        commit = getattr(self._conn, "commit", None)
        if commit is not None:
            commit()

    def _save(self, key_hash: str | None, body: dict, conversation: list) -> None:
        now = time.time()
        self._execute(f"INSERT INTO {TABLE} (id, key_hash, created_at, body, conversation) VALUES (?, ?, ?, ?, ?) "
                      "ON CONFLICT (id) DO NOTHING",
                      (str(body["id"]), key_hash or "", now, json.dumps(body), json.dumps(conversation)))
        if now - self._purged >= PURGE_EVERY_SECONDS:
            self._purged = now
            deleted = self._execute(f"DELETE FROM {TABLE} WHERE created_at < ?", (now - self.retention,)).rowcount
            if deleted:
                log.info("deleted %d stored response(s) older than the retention", deleted)
        self._commit()

    def _get(self, key_hash: str | None, response_id: str) -> Stored | None:
        row = self._execute(
            f"SELECT body, conversation FROM {TABLE} WHERE id = ? AND key_hash = ? AND created_at >= ?",
            (response_id, key_hash or "", time.time() - self.retention),
        ).fetchone()
        self._commit()  # end the read transaction (SQLite would otherwise hold a snapshot)
        return None if row is None else Stored(response_id, json.loads(row[0]), json.loads(row[1]))

    def _delete(self, key_hash: str | None, response_id: str) -> bool:
        deleted = self._execute(f"DELETE FROM {TABLE} WHERE id = ? AND key_hash = ?",
                                (response_id, key_hash or "")).rowcount
        self._commit()
        return deleted > 0

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass
