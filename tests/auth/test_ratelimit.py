"""hooks.ratelimit: the sliding-window log in memory (fake clock) and in a real redis-server."""

from __future__ import annotations

import asyncio
import logging

import pytest

from hooks import ratelimit
from hooks.ratelimit import Limiter, Limits, MemoryLimiter, RedisLimiter, Verdict, duration, headers, stamp
from tests.auth.conftest import RedisServer
from tests.harness import free_port

TEN_PER_MINUTE = Limits(requests=10, window=60)


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_memory_limiter_admits_exactly_the_limit_at_one_instant():
    limiter = MemoryLimiter(Clock())
    verdicts = [limiter.acquire("k", TEN_PER_MINUTE) for _ in range(15)]
    assert [v.allowed for v in verdicts] == [True] * 10 + [False] * 5
    assert [v.remaining for v in verdicts[:10]] == list(range(9, -1, -1))
    assert (verdicts[-1].over, verdicts[-1].retry_after, verdicts[-1].reset) == ("requests", 60.0, 60.0)


def test_memory_limiter_window_slides_instead_of_resetting_at_a_boundary():
    clock = Clock(now=59.0)  # a fixed window [0, 60) would reset at 60 and admit 10 more
    limiter = MemoryLimiter(clock)
    assert all(limiter.acquire("k", TEN_PER_MINUTE).allowed for _ in range(5))
    clock.now = 60.0
    assert all(limiter.acquire("k", TEN_PER_MINUTE).allowed for _ in range(5))
    clock.now = 61.0
    refused = limiter.acquire("k", TEN_PER_MINUTE)
    assert (refused.allowed, refused.retry_after, refused.reset) == (False, 58.0, 59.0)
    clock.now = 119.0  # one window after the first five: exactly five slots are free again
    assert [limiter.acquire("k", TEN_PER_MINUTE).allowed for _ in range(6)] == [True] * 5 + [False]


def test_memory_limiter_keys_are_independent():
    limiter = MemoryLimiter(Clock())
    assert all(limiter.acquire("a", Limits(2, 60)).allowed for _ in range(2))
    assert limiter.acquire("a", Limits(2, 60)).allowed is False
    assert limiter.acquire("b", Limits(2, 60)).remaining == 1


def test_memory_limiter_tokens_per_minute_budget():
    clock = Clock(now=600.0)  # the start of a clock minute
    limiter = MemoryLimiter(clock)
    metered = Limits(requests=100, window=60, tpm=20)
    assert limiter.acquire("k", metered).tokens_remaining == 20
    limiter.charge("k", 15)
    assert limiter.acquire("k", metered).tokens_remaining == 5
    limiter.charge("k", 10)
    clock.now += 15
    refused = limiter.acquire("k", metered)
    assert (refused.allowed, refused.over, refused.tokens_remaining, refused.retry_after) == (False, "tokens", 0, 45.0)
    clock.now += 45  # next minute: budget back
    assert limiter.acquire("k", metered).tokens_remaining == 20


@pytest.mark.parametrize(("seconds", "text"),
                         [(0.35, "350ms"), (0.0, "0ms"), (12, "12s"), (11.2, "12s"), (60, "1m0s"), (61.5, "1m2s")])
def test_reset_durations_use_openai_format(seconds, text):
    assert duration(seconds) == text


def test_headers_replace_upstream_ones_and_add_retry_after_only_when_refused():
    allowed = Verdict(allowed=True, limit=10, remaining=7, reset=42.0, retry_after=0)
    raw = [(b"content-type", b"application/json"), (b"x-ratelimit-remaining-requests", b"4999")]
    stamped = stamp(raw, allowed)
    assert stamped.count((b"x-ratelimit-remaining-requests", b"7")) == 1
    assert (b"x-ratelimit-remaining-requests", b"4999") not in stamped
    assert dict(stamped)[b"x-ratelimit-reset-requests"] == b"42s"
    assert b"retry-after" not in dict(stamped)
    refused = Verdict(allowed=False, limit=10, remaining=0, reset=59.5, retry_after=0.2, over="requests")
    assert dict(headers(refused))["retry-after"] == "1"


@pytest.fixture
def redis_url(fresh_redis) -> str:
    return fresh_redis.url


def test_redis_limiter_is_exact_under_concurrency_from_two_clients(redis_url):
    async def scenario() -> list[Verdict]:
        first, second = RedisLimiter(redis_url), RedisLimiter(redis_url)  # like two gateway processes
        calls = [(first if i % 2 else second).acquire("k", TEN_PER_MINUTE) for i in range(50)]
        return await asyncio.gather(*calls)

    verdicts = asyncio.run(scenario())
    assert sum(v.allowed for v in verdicts) == 10
    assert sorted(v.remaining for v in verdicts if v.allowed) == list(range(10))
    assert all(0 < v.retry_after <= 60 for v in verdicts if not v.allowed)
    assert {v.store for v in verdicts} == {"redis"}


def test_redis_limiter_tokens_budget(redis_url):
    async def scenario() -> tuple[Verdict, Verdict]:
        limiter = RedisLimiter(redis_url)
        metered = Limits(requests=100, window=60, tpm=20)
        await limiter.acquire("k", metered)
        await limiter.charge("k", 25)
        return await limiter.acquire("k", metered), await limiter.acquire("other", metered)

    refused, other = asyncio.run(scenario())
    assert (refused.allowed, refused.over, refused.tokens_remaining) == (False, "tokens", 0)
    assert 0 < refused.retry_after <= 60
    assert (other.allowed, other.tokens_remaining) == (True, 20)


def test_limiter_falls_back_to_memory_without_hanging_and_warns_once(caplog):
    dead = RedisLimiter(f"redis://127.0.0.1:{free_port()}/0")
    clock = Clock()
    limiter = Limiter(dead, clock=clock)

    async def scenario() -> list[Verdict]:
        verdicts = []
        for _ in range(3):
            clock.now += 5  # past the retry interval: every call tries Redis again
            verdicts.append(await asyncio.wait_for(limiter.acquire("k", Limits(2, 60)), timeout=5))
        return verdicts

    with caplog.at_level(logging.WARNING, logger="gateway.ratelimit"):
        verdicts = asyncio.run(scenario())
    assert [(v.store, v.allowed) for v in verdicts] == [("memory", True), ("memory", True), ("memory", False)]
    assert len(caplog.records) == 1  # one warning per outage, not one per request
    assert "rate limits now count in this process only" in caplog.records[0].getMessage()


def test_limiter_goes_back_to_redis_when_it_returns(caplog):
    server = RedisServer("unit-return")
    clock = Clock()

    async def acquire() -> Verdict:
        return await asyncio.wait_for(limiter.acquire("k", TEN_PER_MINUTE), timeout=5)

    limiter = Limiter(RedisLimiter(server.url), clock=clock)
    with caplog.at_level(logging.WARNING, logger="gateway.ratelimit"):
        assert asyncio.run(acquire()).store == "memory"
        server.start()
        try:
            assert asyncio.run(acquire()).store == "memory"  # within the retry interval: not tried yet
            clock.now += ratelimit.RETRY_INTERVAL
            limiter.redis = RedisLimiter(server.url)  # a new loop per asyncio.run needs a new client
            assert asyncio.run(acquire()).store == "redis"
        finally:
            server.stop()
    assert "is back" in caplog.records[-1].getMessage()
