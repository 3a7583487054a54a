"""The ledger on PostgreSQL (DATABASE_URL): the writer's rows, read back by `gateway report`.

A full gateway is not started here: with DATABASE_URL LiteLLM also switches to its Prisma-backed
DB mode, whose engine cannot be downloaded on these machines (see /work/shared/REFERENCE.md).
"""

from __future__ import annotations

import json
import subprocess
import time

from hooks.ledger_store import COLUMNS, LedgerWriter, PostgresStore
from tests.harness import GATEWAY_BIN, REPO


def _row(i: int, route: str, ts: float) -> tuple:
    values = {"request_id": f"pg{i}", "ts": ts, "key_hash": "sha256:0badcafe", "requested_model": "auto",
              "served_model": "qwen2.5:7b" if route == "local" else "deepseek-chat", "route": route, "reason": "simple",
              "fallback_cause": None, "prompt_tokens": 7, "completion_tokens": 11, "reasoning_tokens": 0,
              "tokens_counted": 0, "latency_ms": 10.0, "ttft_ms": None, "cost_usd": 0.0 if route == "local" else 6.58e-06,
              "saved_usd": 6.58e-06 if route == "local" else 0.0, "status": 200, "error_type": None, "stream": 0}
    return tuple(values.get(c) for c in COLUMNS)  # columns added later (cache, ...) are NULL


def test_postgres_ledger_is_written_and_reported(postgres_url, tmp_path):
    errors = []
    writer = LedgerWriter(PostgresStore(postgres_url), on_error=lambda kind, n: errors.append((kind, n)))
    now = time.time()
    for i, route in enumerate(("local", "local", "cloud")):
        writer.put(_row(i, route, now - 60))
    writer.put(_row(0, "local", now - 60))  # the same request id twice is stored once
    writer.put(_row(9, "cloud", now - 3 * 86400))  # outside --since 24h
    writer.close()
    assert errors == [] and writer.written == 5
    result = subprocess.run([str(GATEWAY_BIN), "report", "--format", "json", "--config", str(REPO / "config.yaml")],
                            env={"PATH": "/usr/bin:/bin", "DATABASE_URL": postgres_url}, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert {route: t["requests"] for route, t in report["by_route"].items()} == {"local": 2, "cloud": 1}
    assert report["totals"]["prompt_tokens"] == 21
    assert report["cost_comparison"]["saved_usd"] == 2 * 6.58e-06
