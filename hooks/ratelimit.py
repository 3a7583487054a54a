"""Per-key rate limits: an exact sliding-window log, in Redis (one Lua script) or in memory.

Algorithm (both stores): every key has a log of the arrival times of its admitted requests.
A request is admitted when fewer than `requests` entries are younger than `window` seconds,
and the check and the insert are one atomic step: a Lua script in Redis (Redis runs scripts
one at a time), a block without `await` in one event loop in memory. So no interval of
`window` seconds ever admits more than `requests` requests, whatever the number of workers
or gateway instances sharing the Redis; the script reads Redis's own clock (TIME), so the
gateways' clocks do not matter. A fixed-window counter would admit up to 2 x requests
around a window boundary, which is why the log is used; it costs one sorted-set entry per
admitted request, kept for `window` seconds.

Tokens per minute (optional) are a budget per clock minute, checked before a request and
charged after its response (`charge`), because token counts are only known then: one
request may overshoot it. Request limits are exact; token limits are not.

Failure: when Redis errors or does not answer (1 s socket timeouts; a dropped connection
is retried once at once), the limiter logs one warning, answers from the in-memory limiter
(per process, so during an outage W workers admit up to W x requests), tries Redis again at
most once a second and logs when it is back. No request fails because of Redis, or waits
for it longer than the timeout. A call that timed out may still have been counted by Redis,
which errs on the strict side.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
import uuid
from collections import deque
from dataclasses import dataclass
from urllib.parse import urlsplit

log = logging.getLogger("gateway.ratelimit")

REDIS_TIMEOUT = 1.0  # seconds per socket operation: generous, as a busy event loop delays replies too
REDIS_DEADLINE = 2.0  # seconds for the whole Redis call, including one reconnect
REDIS_CONNECTIONS = 16  # per process; a script takes microseconds, so requests queue briefly, never storm
RETRY_INTERVAL = 1.0  # seconds between attempts to use Redis again after a failure
ADMITTED, OVER_REQUESTS, OVER_TOKENS = 0, 1, 2

# KEYS[1] request log (sorted set, score = arrival ms), KEYS[2] token counter (hash: minute, used)
# ARGV[1] requests, ARGV[2] window ms, ARGV[3] unique member, ARGV[4] tokens per minute (0 = off)
ACQUIRE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit, window, tpm = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[4])
local minute = math.floor(tonumber(t[1]) / 60)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
local used = 0
if tpm > 0 and tonumber(redis.call('HGET', KEYS[2], 'minute') or '-1') == minute then
  used = tonumber(redis.call('HGET', KEYS[2], 'used') or '0')
end
local verdict = 0
if count >= limit then
  verdict = 1
elseif tpm > 0 and used >= tpm then
  verdict = 2
else
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  count = count + 1
end
local oldest, newest = now - window, now - window
if count > 0 then
  oldest = tonumber(redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2])
  newest = tonumber(redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')[2])
end
return {verdict, count, oldest + window - now, newest + window - now, used, (minute + 1) * 60000 - now}
"""

# KEYS[1] token counter; ARGV[1] tokens
CHARGE_LUA = """
local minute = math.floor(tonumber(redis.call('TIME')[1]) / 60)
if tonumber(redis.call('HGET', KEYS[1], 'minute') or '-1') == minute then
  redis.call('HINCRBY', KEYS[1], 'used', ARGV[1])
else
  redis.call('HSET', KEYS[1], 'minute', minute, 'used', ARGV[1])
end
redis.call('EXPIRE', KEYS[1], 120)
return 1
"""


@dataclass(frozen=True)
class Limits:
    requests: int
    window: int  # seconds
    tpm: int | None = None


@dataclass(frozen=True)
class Verdict:
    """The limiter's answer for one request; `reset` is when the whole budget is back."""

    allowed: bool
    limit: int
    remaining: int
    reset: float  # seconds until the request log is empty
    retry_after: float  # seconds until a request would pass (0 when allowed)
    over: str | None = None  # "requests" | "tokens" when refused
    tokens_limit: int | None = None
    tokens_remaining: int | None = None
    tokens_reset: float | None = None
    store: str = "memory"  # "redis" | "memory"


def verdict_from(raw: tuple[int, int, float, float, int, float], limits: Limits, store: str) -> Verdict:
    """Build a Verdict from the script's (or the memory limiter's) numbers; times in ms."""
    code, count, oldest_ms, newest_ms, used, minute_left_ms = raw
    retry_ms = 0.0 if code == ADMITTED else (minute_left_ms if code == OVER_TOKENS else oldest_ms)
    return Verdict(
        allowed=code == ADMITTED,
        limit=limits.requests,
        remaining=max(limits.requests - count, 0),
        reset=max(newest_ms, 0) / 1000,
        retry_after=max(retry_ms, 0) / 1000,
        over={ADMITTED: None, OVER_REQUESTS: "requests", OVER_TOKENS: "tokens"}[code],
        tokens_limit=limits.tpm,
        tokens_remaining=None if limits.tpm is None else max(limits.tpm - used, 0),
        tokens_reset=None if limits.tpm is None else max(minute_left_ms, 0) / 1000,
        store=store,
    )


def duration(seconds: float) -> str:
    """OpenAI's x-ratelimit-reset-* format: 350ms, 12s, 1m0s."""
    ms = math.ceil(seconds * 1000)
    if ms < 1000:
        return f"{ms}ms"
    minutes, secs = divmod(math.ceil(ms / 1000), 60)
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def headers(verdict: Verdict) -> list[tuple[str, str]]:
    out = [
        ("x-ratelimit-limit-requests", str(verdict.limit)),
        ("x-ratelimit-remaining-requests", str(verdict.remaining)),
        ("x-ratelimit-reset-requests", duration(verdict.reset)),
    ]
    if verdict.tokens_limit is not None:
        out += [
            ("x-ratelimit-limit-tokens", str(verdict.tokens_limit)),
            ("x-ratelimit-remaining-tokens", str(verdict.tokens_remaining)),
            ("x-ratelimit-reset-tokens", duration(verdict.tokens_reset or 0)),
        ]
    if not verdict.allowed:
        out.append(("retry-after", str(max(1, math.ceil(verdict.retry_after)))))
    return out


def stamp(raw_headers: list[tuple[bytes, bytes]], verdict: Verdict) -> list[tuple[bytes, bytes]]:
    """ASGI headers with ours replacing any same-named ones (e.g. a provider's passed through)."""
    ours = [(name.encode(), value.encode()) for name, value in headers(verdict)]
    names = {name for name, _ in ours}
    return [(n, v) for n, v in raw_headers if n.lower() not in names] + ours


class MemoryLimiter:
    """The same algorithm for one process (asyncio: no await between check and insert)."""

    def __init__(self, clock=time.monotonic) -> None:
        self._clock = clock
        self._logs: dict[str, deque[float]] = {}
        self._tokens: dict[str, tuple[int, int]] = {}  # bucket -> (minute, used)

    def acquire(self, bucket: str, limits: Limits) -> Verdict:
        now = self._clock() * 1000
        window = limits.window * 1000
        entries = self._logs.setdefault(bucket, deque())
        while entries and entries[0] <= now - window:
            entries.popleft()
        minute = int(now // 60000)
        stored_minute, used = self._tokens.get(bucket, (minute, 0))
        used = used if stored_minute == minute else 0
        if len(entries) >= limits.requests:
            code = OVER_REQUESTS
        elif limits.tpm and used >= limits.tpm:
            code = OVER_TOKENS
        else:
            code = ADMITTED
            entries.append(now)
        oldest = entries[0] if entries else now - window
        newest = entries[-1] if entries else now - window
        raw = (code, len(entries), oldest + window - now, newest + window - now, used, (minute + 1) * 60000 - now)
        return verdict_from(raw, limits, "memory")

    def charge(self, bucket: str, tokens: int) -> None:
        minute = int(self._clock() * 1000 // 60000)
        stored_minute, used = self._tokens.get(bucket, (minute, 0))
        self._tokens[bucket] = (minute, (used if stored_minute == minute else 0) + tokens)


def redis_client(url: str):
    """An asyncio Redis client with the timeouts above (also used by hooks.inflight)."""
    from redis.asyncio import BlockingConnectionPool, Redis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError

    pool = BlockingConnectionPool.from_url(
        url, max_connections=REDIS_CONNECTIONS, timeout=REDIS_DEADLINE, socket_timeout=REDIS_TIMEOUT,
        socket_connect_timeout=REDIS_TIMEOUT, retry=Retry(NoBackoff(), 1, (RedisConnectionError,)),  # reconnect once
    )
    return Redis(connection_pool=pool)


class RedisLimiter:
    def __init__(self, url: str, prefix: str = "gateway:rl:") -> None:
        self.where = redis_location(url)
        self.prefix = prefix
        self.client = redis_client(url)
        self._acquire = self.client.register_script(ACQUIRE_LUA)
        self._charge = self.client.register_script(CHARGE_LUA)

    def keys(self, bucket: str) -> list[str]:
        return [f"{self.prefix}{bucket}:req", f"{self.prefix}{bucket}:tok"]

    async def acquire(self, bucket: str, limits: Limits) -> Verdict:
        args = [limits.requests, limits.window * 1000, uuid.uuid4().hex, limits.tpm or 0]
        raw = await self._acquire(keys=self.keys(bucket), args=args)
        return verdict_from(tuple(int(x) for x in raw), limits, "redis")

    async def charge(self, bucket: str, tokens: int) -> None:
        await self._charge(keys=self.keys(bucket)[1:], args=[tokens])


def redis_location(url: str) -> str:
    """host:port/db of a Redis URL, without the password, for logs."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 6379}{parts.path or ''}"


class Limiter:
    """Redis when configured and answering, else the in-memory limiter (see module docstring)."""

    def __init__(self, redis: RedisLimiter | None, memory: MemoryLimiter | None = None, clock=time.monotonic) -> None:
        self.redis = redis
        self.memory = memory or MemoryLimiter()
        self._clock = clock
        self._retry_at = 0.0
        self._down = False

    async def acquire(self, bucket: str, limits: Limits) -> Verdict:
        if self._use_redis():
            try:
                async with asyncio.timeout(REDIS_DEADLINE):  # unlike wait_for, no extra task per call
                    verdict = await self.redis.acquire(bucket, limits)
            except Exception as exc:  # any Redis failure falls back: limits must never fail a request
                self._failed(exc)
            else:
                self._recovered()
                return verdict
        return self.memory.acquire(bucket, limits)

    async def charge(self, bucket: str, tokens: int) -> None:
        if tokens <= 0:
            return
        if self._use_redis():
            try:
                async with asyncio.timeout(REDIS_DEADLINE):
                    await self.redis.charge(bucket, tokens)
                return
            except Exception as exc:
                self._failed(exc)
        self.memory.charge(bucket, tokens)

    async def redis_call(self, call) -> tuple[bool, object]:
        """Run `call(client)` on the limiter's Redis with its deadline and outage handling (hooks.cache and
        hooks.budgets share the connection): (True, result), or (False, None) without a working Redis."""
        if not self._use_redis():
            return False, None
        try:
            async with asyncio.timeout(REDIS_DEADLINE):
                result = await call(self.redis.client)
        except Exception as exc:
            self._failed(exc)
            return False, None
        self._recovered()
        return True, result

    def _use_redis(self) -> bool:
        return self.redis is not None and self._clock() >= self._retry_at

    def _failed(self, exc: BaseException) -> None:
        self._retry_at = self._clock() + RETRY_INTERVAL
        if not self._down:
            self._down = True
            log.warning("Redis at %s failed (%s: %s); rate limits now count in this process only until it is back",
                        self.redis.where, type(exc).__name__, exc)

    def _recovered(self) -> None:
        if self._down:
            self._down = False
            log.warning("Redis at %s is back; rate limits are shared across workers again", self.redis.where)


def build_limiter(redis_url: str | None) -> Limiter:
    return Limiter(RedisLimiter(redis_url) if redis_url else None)


@functools.cache
def get_limiter() -> Limiter:
    """The worker's limiter (one per process, whichever copy of hooks.auth asks)."""
    from hooks.runtime import get_runtime

    url = get_runtime().settings.redis_url
    limiter = build_limiter(url.get_secret_value() if url else None)
    where = f"Redis at {limiter.redis.where}" if limiter.redis else "this process only (no REDIS_URL)"
    log.info("rate limits are counted in %s", where)
    return limiter
