"""The ledger on PostgreSQL (DATABASE_URL): the writer's rows, read back by `gateway report`.

A full gateway is not started here: with DATABASE_URL LiteLLM also switches to its Prisma-backed
DB mode, whose engine cannot be downloaded on these machines (see /work/shared/REFERENCE.md).
"""

from __future__ import annotations

import json
import subprocess
import time

from hooks.ledger_store import LedgerWriter, PostgresStore
from tests.harness import GATEWAY_BIN, REPO
from tests.observability.helpers import ledger_row


def _row(i: int, route: str, ts: float) -> tuple:
    cloud = route == "cloud"
    return ledger_row(i, ts, request_id=f"pg{i}", key_hash="sha256:0badcafe", route=route, latency_ms=10.0,
                      served_model="deepseek-chat" if cloud else "qwen2.5:7b", cost_usd=6.58e-06 if cloud else 0.0,
                      saved_usd=0.0 if cloud else 6.58e-06)


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
