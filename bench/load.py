"""Load generation: `wrk` (a C load generator) for latency and throughput, and a small
blocking client for streaming time-to-first-token.

`wrk` posts a fixed body through bench/post.lua and reports latency percentiles from its own
histogram. The stream probe is plain `http.client` on one keep-alive connection; its own cost
is in every row, including the `direct` one, so overheads (row minus direct) cancel it out.
Both raise `LoadError` with the output when a run fails or any response is not a 2xx.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

LUA = Path(__file__).with_name("post.lua")
WRK = shutil.which("wrk") or "/usr/bin/wrk"


class LoadError(RuntimeError):
    """A load run failed or saw errors; the message carries what wrk or the server said."""


@dataclass(frozen=True)
class Request:
    """One benchmark request against one target."""

    url: str  # scheme://host:port
    path: str
    body: bytes
    key: str | None = None

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        return headers


def wrk(request: Request, body_file: Path, connections: int, seconds: float, threads: int = 1) -> dict:
    """One wrk run; latencies in microseconds, plus `rps` (2xx responses per second)."""
    body_file.write_bytes(request.body)
    env = {**os.environ, "BENCH_BODY_FILE": str(body_file), "BENCH_KEY": request.key or ""}
    cmd = [WRK, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
           "-s", str(LUA), request.url + request.path]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 60)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if proc.returncode != 0 or line is None:
        raise LoadError(f"wrk failed ({proc.returncode}): {proc.stdout[-1500:]} {proc.stderr[-1500:]}")
    result = json.loads(line.removeprefix("BENCH_JSON "))
    errors = sum(result[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts"))
    if errors:
        raise LoadError(f"{request.url}{request.path}: {errors} errors in {result['requests']} requests: {result}")
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["connections"] = connections
    return result


def stream_probe(request: Request, count: int, timeout: float = 30.0) -> dict:
    """Sequential streaming requests: time to the first body bytes and to the end of the stream (ms)."""
    host, port = request.url.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    first, total = [], []
    try:
        for _ in range(count):
            started = time.perf_counter()
            conn.request("POST", request.path, request.body, request.headers())
            response = conn.getresponse()
            if response.status != 200:
                raise LoadError(f"stream probe {request.url}{request.path}: HTTP {response.status} {response.read()[:500]!r}")
            chunk = response.read1(65536)
            first.append(time.perf_counter() - started)
            size = len(chunk) + len(response.read())  # read() also frees the connection for reuse
            total.append(time.perf_counter() - started)
            if size == 0:
                raise LoadError(f"stream probe {request.url}{request.path}: empty body")
    finally:
        conn.close()
    return {
        "ttft_p50_ms": statistics.median(first) * 1e3,
        "ttft_p99_ms": _quantile(first, 0.99) * 1e3,
        "stream_p50_ms": statistics.median(total) * 1e3,
        "requests": count,
    }


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
