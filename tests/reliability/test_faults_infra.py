"""Issue 6, infrastructure faults: Redis down and the ledger's disk unwritable, against a real gateway.

One gateway starts with both broken: REDIS_URL points at a port where nothing listens yet, and
DATA_DIR lies under a regular file, so no process can create it (unlike chmod, this holds for
root too, and CI runs as root). Specified outcomes:
- the gateway starts, and requests (streaming and not) succeed without waiting on Redis: the
  in-memory limiter counts them, one warning is logged; once Redis listens, limits count there
  again and are enforced with an OpenAI-shaped 429;
- a stalled Redis (SIGSTOP: accepts, never answers) delays a stream by at most the limiter's
  deadline, and the stream completes;
- records that cannot be written are dropped and counted, requests still succeed, and writing
  resumes on its own once the disk is writable again.
Covered elsewhere and not repeated here: Redis stopping or stalling mid-run and coming back
empty (tests/auth/test_limits_e2e.py), the unwritable ledger's log line and
gateway_ledger_errors_total with LOG_LEVEL=WARNING (tests/observability/test_health_and_ledger_failures_e2e.py).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from hooks.ledger_store import SQLITE_FILE
from hooks.ratelimit import REDIS_DEADLINE
from proxy_config.keys import key_digest
from tests.harness import DEEPSEEK_KEY, MASTER_KEY, Gateway, free_port
from tests.observability.helpers import scrape, wait_until
from tests.redis_server import RedisServer
from tests.reliability.helpers import SHORT, assert_openai_error, auth, sse_events

KEY = "sk-infra-test-limited-4b8e1d7a2c9f0635"
PROBE = "sk-infra-test-probe-9c2f6a0e4d8b1753"
LIMIT = 5          # RATE_LIMIT_REQUESTS per 60 s
MARGIN = 5.0       # must-not-hang bound on top of what a request may legitimately wait
WENT_DOWN = "rate limits now count in this process only"
CAME_BACK = "is back; rate limits"
LEDGER_WRITE_ERRORS = ("gateway_ledger_errors_total", (("kind", "write"),))


@pytest.fixture(scope="module")
def redis_later() -> RedisServer:
    """A Redis whose port the gateway is given before anything listens on it."""
    server = RedisServer("infra-later", port=free_port())
    yield server
    server.stop()


@pytest.fixture(scope="module")
def blocked_data(tmp_path_factory) -> Path:
    blocker = tmp_path_factory.mktemp("infra") / "not-a-directory"
    blocker.write_text("a file where the data directory's parent should be\n")
    return blocker


@pytest.fixture(scope="module")
def infra_gw(ollama, deepseek, redis_later, blocked_data):
    gw = Gateway("infra-faults", {
        "OLLAMA_URL": ollama.url, "DEEPSEEK_URL": deepseek.url, "DEEPSEEK_API_KEY": DEEPSEEK_KEY,
        "API_KEYS": f"{KEY},{PROBE}", "RATE_LIMIT_REQUESTS": str(LIMIT), "RATE_LIMIT_WINDOW": "60",
        "REDIS_URL": redis_later.url, "DATA_DIR": str(blocked_data / "data"),
    })
    yield gw.wait_ready()
    gw.stop()


def chat(gw: Gateway, stream: bool, key: str = MASTER_KEY, bound: float = MARGIN) -> tuple[httpx.Response, list[str], float]:
    """One request (the master key is not rate-limited); `bound` is the must-not-hang limit."""
    start = time.monotonic()
    with httpx.stream("POST", f"{gw.url}/v1/chat/completions", headers=auth(key), timeout=bound,
                      json={"model": "auto", "messages": SHORT, "stream": stream}) as response:
        if stream and response.status_code == 200:
            events = sse_events(response.iter_lines())
        else:
            events = []
            response.read()
    return response, events, time.monotonic() - start


def assert_served(response: httpx.Response, events: list[str], stream: bool) -> None:
    assert response.status_code == 200, response.text
    if stream:
        assert events[-1] == "[DONE]" and len(events) > 2, events
    else:
        assert response.json()["choices"][0]["message"]["content"].startswith("Hello from")


def test_redis_down_at_startup_limits_in_memory_then_in_redis_once_it_listens(infra_gw, redis_later):
    remaining = []
    for stream in (False, True):
        response, events, elapsed = chat(infra_gw, stream, KEY)
        assert_served(response, events, stream)
        remaining.append(response.headers["x-ratelimit-remaining-requests"])
        assert elapsed < MARGIN
    assert remaining == [str(LIMIT - 1), str(LIMIT - 2)]  # counted, in memory
    assert infra_gw.log().count(WENT_DOWN) == 1  # one warning per outage, not one per request

    redis_later.start()
    bucket = f"gateway:rl:{key_digest(PROBE)}:req"
    wait_until(lambda: chat(infra_gw, False, PROBE)[0].status_code == 200 and redis_later.client().exists(bucket),
               "the limiter to use Redis again", timeout=15)
    assert infra_gw.log().count(CAME_BACK) == 1

    # Redis counts from zero: LIMIT more pass (the in-memory count of 2 would allow only 3), then a 429.
    statuses = [chat(infra_gw, i % 2 == 1, KEY)[0].status_code for i in range(LIMIT)]
    assert statuses == [200] * LIMIT
    assert redis_later.client().zcard(f"gateway:rl:{key_digest(KEY)}:req") == LIMIT
    refused = infra_gw.post("/v1/chat/completions", {"model": "auto", "messages": SHORT}, key=KEY)
    error = assert_openai_error(refused, 429)
    assert error["code"] == "rate_limit_exceeded"
    assert 1 <= int(refused.headers["retry-after"]) <= 60


def test_stalled_redis_delays_a_stream_by_at_most_the_limiter_deadline(infra_gw, redis_later):
    if redis_later.proc is None:
        redis_later.start()
    redis_later.client().flushall()
    chat(infra_gw, False, PROBE)  # the limiter is on Redis (or notices it is back) before the stall
    warned = infra_gw.log().count(WENT_DOWN)
    os.kill(redis_later.proc.pid, signal.SIGSTOP)  # accepts connections, never answers
    try:
        response, events, elapsed = chat(infra_gw, True, PROBE, bound=REDIS_DEADLINE + MARGIN)
    finally:
        os.kill(redis_later.proc.pid, signal.SIGCONT)
    assert_served(response, events, True)
    assert response.headers["x-ratelimit-limit-requests"] == str(LIMIT)
    assert elapsed < REDIS_DEADLINE + MARGIN
    wait_until(lambda: infra_gw.log().count(WENT_DOWN) == warned + 1, "the limiter to notice the stall")


def ledger_ids(data_dir: Path) -> set[str]:
    path = data_dir / SQLITE_FILE
    if not path.is_file():
        return set()
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as conn:
        return {row[0] for row in conn.execute("SELECT request_id FROM gateway_requests")}


def settled_write_errors(gw: Gateway, quiet: float = 1.0, timeout: float = 30.0) -> float:
    """The ledger write-error count once it has stopped moving for `quiet` seconds: records of
    earlier tests' requests may still be in the writer's batch (it lingers 0.2 s per batch)."""
    deadline = time.monotonic() + timeout
    value, since = scrape(gw).get(LEDGER_WRITE_ERRORS, 0), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = scrape(gw).get(LEDGER_WRITE_ERRORS, 0)
        if now != value:
            value, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return value
    raise AssertionError("the ledger write-error count did not settle")


def test_unwritable_ledger_drops_and_counts_records_then_writes_again_once_the_disk_is_back(infra_gw, blocked_data):
    before = settled_write_errors(infra_gw)
    lost = []
    for stream in (False, True):
        response, events, _ = chat(infra_gw, stream)
        assert_served(response, events, stream)
        lost.append(response.headers["x-request-id"])
    wait_until(lambda: scrape(infra_gw).get(LEDGER_WRITE_ERRORS, 0) == before + 2, "2 ledger write errors counted")

    blocked_data.unlink()  # the disk is writable again: DATA_DIR can be created
    blocked_data.mkdir()
    kept = []
    for stream in (False, True):
        response, events, _ = chat(infra_gw, stream)
        assert_served(response, events, stream)
        kept.append(response.headers["x-request-id"])
    data_dir = blocked_data / "data"
    wait_until(lambda: set(kept) <= ledger_ids(data_dir), "the records written once the disk is back")
    assert not set(lost) & ledger_ids(data_dir)  # dropped, not replayed
    assert scrape(infra_gw).get(LEDGER_WRITE_ERRORS, 0) == before + 2
