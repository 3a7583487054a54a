"""Issue 3 acceptance, limits part: exact per-key limits across workers, processes and a Redis outage."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter

import httpx
import pytest

from tests.auth.conftest import (
    KEY_A, KEY_B, KEY_C, KEY_OUTAGE, KEY_PROBE, KEY_STALL, KEY_TPM, LIMIT, TPM_LIMIT, RedisServer, auth_header, gateway_env,
)
from tests.harness import Gateway
from proxy_config.keys import key_digest

CHAT = {"model": "qwen2.5:7b", "messages": [{"role": "user", "content": "Say hello."}]}
BURST = 25


async def burst(urls: list[str], key: str, n: int) -> list[httpx.Response]:
    """n requests at once with one key, spread round-robin over the gateways."""
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=n)) as client:
        calls = [client.post(f"{urls[i % len(urls)]}/v1/chat/completions", headers=auth_header(key), json=CHAT)
                 for i in range(n)]
        return await asyncio.gather(*calls)


def assert_exactly_limit_pass(responses: list[httpx.Response]) -> None:
    assert Counter(r.status_code for r in responses) == {200: LIMIT, 429: BURST - LIMIT}
    for r in responses:
        assert r.headers["x-ratelimit-limit-requests"] == str(LIMIT)
        if r.status_code == 429:
            assert 1 <= int(r.headers["retry-after"]) <= 60
            assert r.headers["x-ratelimit-remaining-requests"] == "0"
            assert r.json()["error"]["type"] == "rate_limit_error"
            assert r.json()["error"]["code"] == "rate_limit_exceeded"
    remaining = sorted(int(r.headers["x-ratelimit-remaining-requests"]) for r in responses if r.status_code == 200)
    assert remaining == list(range(LIMIT))  # each admitted request saw a distinct count


def test_two_workers_admit_exactly_the_limit_and_other_keys_are_unaffected(limited, ollama, fresh_redis):
    responses = asyncio.run(burst([limited.url], KEY_A, BURST))
    assert_exactly_limit_pass(responses)
    assert ollama.chats("qwen2.5:7b") == LIMIT
    other = httpx.post(f"{limited.url}/v1/chat/completions", headers=auth_header(KEY_B), json=CHAT, timeout=30)
    assert other.status_code == 200
    assert other.headers["x-ratelimit-remaining-requests"] == str(LIMIT - 1)


def test_two_gateway_processes_sharing_redis_admit_exactly_the_limit(limited, second, ollama, fresh_redis):
    responses = asyncio.run(burst([limited.url, second.url], KEY_C, BURST))
    assert_exactly_limit_pass(responses)
    assert ollama.chats("qwen2.5:7b") == LIMIT
    assert fresh_redis.client().zcard(f"gateway:rl:{key_digest(KEY_C)}:req") == LIMIT


def test_tokens_per_minute_budget_refuses_once_spent(limited, fresh_redis):
    counter = f"gateway:rl:{key_digest(KEY_TPM)}:tok"

    def used() -> int:
        return int(fresh_redis.client().hget(counter, "used") or 0)

    for total in (18, 36):  # each reply is 18 tokens (7 prompt + 11 completion): two spend the budget of 20
        response = httpx.post(f"{limited.url}/v1/chat/completions", headers=auth_header(KEY_TPM), json=CHAT, timeout=30)
        assert response.status_code == 200
        assert response.headers["x-ratelimit-limit-tokens"] == str(TPM_LIMIT)
        wait_for(lambda: used() >= total)  # charged after the response, by the token meter callback
        assert used() == total
    refused = httpx.post(f"{limited.url}/v1/chat/completions", headers=auth_header(KEY_TPM), json=CHAT, timeout=30)
    assert refused.status_code == 429
    assert refused.headers["x-ratelimit-remaining-tokens"] == "0"
    assert "tokens per minute" in refused.json()["error"]["message"]


def wait_for(probe, timeout: float = 15.0) -> None:
    """Poll until probe() is truthy (a generous must-not-hang bound, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(0.1)
    pytest.fail(f"condition not met within {timeout}s")


@pytest.fixture
def outage_redis() -> RedisServer:
    server = RedisServer("outage").start()
    yield server
    server.stop()


def test_redis_outage_keeps_serving_and_limits_return_with_redis(ollama, deepseek, outage_redis):
    env = gateway_env(ollama, deepseek, outage_redis.url, RATE_LIMIT_REQUESTS="5",
                      API_KEYS=f"{KEY_OUTAGE},{KEY_PROBE},{KEY_STALL}")
    gw = Gateway("auth-outage", env).wait_ready()
    probe_key = f"gateway:rl:{key_digest(KEY_PROBE)}:req"

    def post(key: str) -> httpx.Response:  # the timeout is the must-not-hang bound
        return httpx.post(f"{gw.url}/v1/chat/completions", headers=auth_header(key), json=CHAT, timeout=8)

    def wait_until_redis_is_used() -> None:
        outage_redis.client().delete(probe_key)
        wait_for(lambda: post(KEY_PROBE).status_code == 200 and outage_redis.client().exists(probe_key))

    try:
        assert [post(KEY_OUTAGE).headers["x-ratelimit-remaining-requests"] for _ in range(3)] == ["4", "3", "2"]
        os.kill(outage_redis.proc.pid, signal.SIGSTOP)  # a Redis that accepts and never answers
        try:
            assert [post(KEY_STALL).status_code for _ in range(3)] == [200, 200, 200]
        finally:
            os.kill(outage_redis.proc.pid, signal.SIGCONT)
        wait_until_redis_is_used()
        outage_redis.stop()  # a Redis that is gone
        assert [post(KEY_OUTAGE).status_code for _ in range(3)] == [200, 200, 200]
        outage_redis.start()  # comes back empty (no persistence)
        wait_until_redis_is_used()
        after = [post(KEY_OUTAGE).status_code for _ in range(7)]
        # Redis counts from zero again, so 5 pass; the in-memory limiter, holding 3, would pass only 2.
        assert after == [200] * 5 + [429] * 2
        assert outage_redis.client().zcard(f"gateway:rl:{key_digest(KEY_OUTAGE)}:req") == 5
        log = gw.log()
        assert (log.count("rate limits now count in this process only"), log.count("is back; rate limits")) == (2, 2)
    finally:
        gw.stop()
