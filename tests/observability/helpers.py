"""Helpers for the observability tests: read the ledger with `gateway report`, scrape /metrics, parse logs."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.harness import GATEWAY_BIN, Gateway


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

