"""Helpers for the observability tests: read the ledger with `gateway report`, scrape /metrics, parse logs."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from hooks.ledger_store import COLUMNS
from tests.harness import GATEWAY_BIN, Gateway

ROW_DEFAULTS = {"key_hash": "sha256:00000000", "requested_model": "auto", "served_model": "qwen2.5:7b", "route": "local",
                "reason": "simple", "fallback_cause": None, "prompt_tokens": 7, "completion_tokens": 11,
                "reasoning_tokens": 0, "tokens_counted": 0, "latency_ms": 12.5, "ttft_ms": None, "cost_usd": 0.0,
                "saved_usd": 1e-6, "status": 200, "error_type": None, "stream": 0}


def ledger_row(i: int, ts: float = 1000.0, **over: object) -> tuple:
    """One ledger row in COLUMNS order; columns a test does not name (cache, ...) are NULL, as in old ledgers."""
    values = {**ROW_DEFAULTS, "request_id": f"r{i}", "ts": ts, **over}
    return tuple(values.get(c) for c in COLUMNS)


def run_report(gw: Gateway, *args: str) -> subprocess.CompletedProcess:
    """`gateway report` against the gateway's DATA_DIR and config, from its working directory."""
    env = dict(gw.env)
    args_of_serve = list(gw.proc.args)
    if "--config" in args_of_serve:
        env["GATEWAY_CONFIG"] = args_of_serve[args_of_serve.index("--config") + 1]
    return subprocess.run([str(GATEWAY_BIN), "report", *args], env=env, cwd=gw.cwd, capture_output=True,
                          text=True, timeout=60)


def report_json(gw: Gateway, since: str = "24h") -> dict:
    result = run_report(gw, "--since", since, "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def scrape(gw: Gateway) -> dict[tuple[str, tuple], float]:
    """/metrics as {(sample name, sorted labels): value}."""
    response = httpx.get(f"{gw.url}/metrics", timeout=10)
    assert response.status_code == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def wait_until(check: Callable[[], object], what: str, timeout: float = 30.0) -> object:
    """Records are written after the response: poll (generous bound, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def json_lines(text: str) -> list[dict]:
    lines = []
    for line in text.splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")

