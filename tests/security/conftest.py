"""Fixtures for the security suite (issue 17): a real `gateway serve` with two workers sharing a
real redis-server, client keys, a ledger under a temporary DATA_DIR, and a loopback listener
that records any request the gateway makes to it (server-side request forgery would show there).

Requests come from 127.0.0.1, a trusted proxy by default (TRUSTED_PROXIES), so a test names
its client address with X-Forwarded-For; every test uses addresses of its own, so the
anonymous per-address limit (ANON_LIMIT) only bites where a test wants it to.
"""

from __future__ import annotations

import http.server
import itertools
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import DEEPSEEK_KEY, Gateway
from tests.redis_server import RedisServer

CLIENT_KEY = "sk-sec-client-7c1e9a3f5b2d4806"
OTHER_KEY = "sk-sec-other-2b8d6f0a4c1e3957"
UI_PASSWORD = "ui-pass-3f9a1c7e5b"
ANON_LIMIT = 30  # ANON_RATE_LIMIT_REQUESTS per 60 s
_addresses = itertools.count(1)


def new_address() -> str:
    """A client address no other request of the session used (10.17.x.y)."""
    n = next(_addresses)
    return f"10.17.{n // 250}.{n % 250 + 1}"


class Listener:
    """A loopback HTTP server that answers 200 to anything and records each request line."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        hits = self.hits

        class Handler(http.server.BaseHTTPRequestHandler):
            def _any(self) -> None:
                hits.append(f"{self.command} {self.path}")
                self.send_response(200)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _any

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()


@pytest.fixture(scope="package")
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.stop()


@pytest.fixture(scope="package")
def sec_redis() -> Iterator[RedisServer]:
    server = RedisServer("security").start()
    yield server
    server.stop()


@pytest.fixture(scope="package")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("sec-data")


@pytest.fixture(scope="package")
def secure(ollama, deepseek, sec_redis, data_dir) -> Iterator[Gateway]:
    """Two workers, Redis, two client keys, the shipped config."""
    env = {
        "OLLAMA_URL": ollama.url, "DEEPSEEK_URL": deepseek.url, "DEEPSEEK_API_KEY": DEEPSEEK_KEY,
        "API_KEYS": f"{CLIENT_KEY},{OTHER_KEY}", "RATE_LIMIT_REQUESTS": "100000", "REDIS_URL": sec_redis.url,
        "DATA_DIR": str(data_dir), "ANON_RATE_LIMIT_REQUESTS": str(ANON_LIMIT), "UI_PASSWORD": UI_PASSWORD,
    }
    gw = Gateway("security", env, workers=2)
    yield gw.wait_ready(timeout=300)  # two workers starting on a busy 2-core machine
    gw.stop()


def ledger_rows(data_dir: Path, request_ids: list[str], timeout: float = 20.0) -> dict[str, dict]:
    """The ledger records of `request_ids` (waits for the background writer)."""
    deadline = time.monotonic() + timeout
    rows: dict[str, dict] = {}
    while time.monotonic() < deadline:
        path = data_dir / "ledger.sqlite3"
        if path.exists():
            with sqlite3.connect(path) as db:
                db.row_factory = sqlite3.Row
                marks = ",".join("?" * len(request_ids))
                rows = {r["request_id"]: dict(r) for r in db.execute(
                    f"SELECT * FROM gateway_requests WHERE request_id IN ({marks})", request_ids)}
            if len(rows) == len(request_ids):
                return rows
        time.sleep(0.2)
    raise AssertionError(f"ledger has {len(rows)} of {len(request_ids)} records after {timeout}s")
