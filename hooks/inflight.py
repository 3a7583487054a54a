"""Load of the local tier: requests in flight to Ollama, and its measured speed per model.

In flight: every request that may be served locally takes a lease before the routing policy
decides (`reserve`), so the count it sees is exact and atomic across workers: with Redis
(REDIS_URL) the leases are members of one sorted set per backend, scored by their expiry
(Redis's own clock), taken and counted by one Lua script; without Redis they are a set in this
process. The policy gets the count of the *other* leases, turned into an expected wait by
custom_router.load; a request that is not routed locally gives its lease back at once
(`settle`), a local one when its response is over (proxy_config.app). So two workers can
never both see the last free slot; a spilled request holds a lease for the time of one
decision, which errs on the side of spilling.
Leases last `LEASE_SECONDS` and each process renews the ones it holds every third of that:
a crashed worker's leases expire within `LEASE_SECONDS`.

Speed: after each local answer (hooks.usage), tokens per second of that stream and its
completion tokens feed per-model moving averages (per process). LiteLLM 1.108.7 keeps Ollama's
eval_count (as usage.completion_tokens) but drops eval_duration
(llms/ollama/chat/transformation.py), so a non-streamed answer reads eval_duration from the
raw body LiteLLM logs (`original_response`) and a stream times eval_count over the time from
its first chunk (`completion_start_time`) to its end.

How it fails: a Redis error or timeout makes this process count in memory (one warning), and
Redis is tried again after `RETRY_INTERVAL`; a lease that cannot be given back expires. A local
attempt that fails over to the cloud keeps its lease until its response ends (errs on spilling).
Nothing here raises into a request: on any error the request is routed with no load
information (wait 0), as before this module existed.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from dataclasses import dataclass, field, replace

from custom_router.load import DEFAULT_ANSWER_TOKENS, DEFAULT_TOKENS_PER_SECOND, LocalLoad, expected_wait, moving_average, \
    tokens_per_second
from custom_router.policy import BackendState, Route, Tier
from hooks.ratelimit import REDIS_DEADLINE, RETRY_INTERVAL, redis_client, redis_location

log = logging.getLogger("gateway.inflight")

BACKEND = "ollama"  # one Ollama per gateway (OLLAMA_URL); its slots are shared by all local models
LEASE_SECONDS = 60.0

# KEYS[1] leases (sorted set, score = expiry ms); ARGV[1] member, ARGV[2] lease ms. Returns the count, this one included.
ACQUIRE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
return redis.call('ZCARD', KEYS[1])
"""
# KEYS[1] leases; ARGV[1] lease ms, ARGV[2..] members held by this process: extend those still there.
RENEW_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]) * 2)
return 0
"""


@dataclass
class Lease:
    member: str
    others: int  # leases held when this one was taken, this one not included
    store: str  # "redis" or "memory": where to give it back


@dataclass
class Speed:
    tokens_per_second: float | None = None
    answer_tokens: float | None = None


class Inflight:
    """Leases per backend, in Redis when configured and answering, else in this process."""

    def __init__(self, redis_url: str | None, prefix: str = "gateway:inflight:", lease_seconds: float = LEASE_SECONDS,
                 clock=time.monotonic) -> None:
        self.client = redis_client(redis_url) if redis_url else None
        self.where = redis_location(redis_url) if redis_url else "this process"
        self.prefix = prefix
        self.lease_ms = int(lease_seconds * 1000)
        self.memory: dict[str, set[str]] = {}
        self.held: dict[str, set[str]] = {}  # this process's Redis leases, for renewal
        self._clock = clock
        self._retry_at = 0.0
        self._down = False
        self._renewer: asyncio.Task | None = None
        if self.client is not None:
            self._acquire = self.client.register_script(ACQUIRE_LUA)
            self._renew = self.client.register_script(RENEW_LUA)

    async def acquire(self, backend: str, member: str) -> Lease:
        if self.client is not None and self._clock() >= self._retry_at:
            try:
                async with asyncio.timeout(REDIS_DEADLINE):
                    count = int(await self._acquire(keys=[self.prefix + backend], args=[member, self.lease_ms]))
            except Exception as exc:  # never fail a request for Redis: count in memory
                self._failed(exc)
            else:
                self._recovered()
                self.held.setdefault(backend, set()).add(member)
                self._start_renewer()
                return Lease(member, count - 1, "redis")
        leases = self.memory.setdefault(backend, set())
        leases.add(member)
        return Lease(member, len(leases) - 1, "memory")

    async def release(self, backend: str, lease: Lease) -> None:
        if lease.store == "memory":
            self.memory.get(backend, set()).discard(lease.member)
            return
        self.held.get(backend, set()).discard(lease.member)
        try:
            async with asyncio.timeout(REDIS_DEADLINE):
                await self.client.zrem(self.prefix + backend, lease.member)
        except Exception as exc:  # the lease expires on its own
            self._failed(exc)

    def _start_renewer(self) -> None:
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.get_running_loop().create_task(self._renew_loop(), name="gateway-inflight-renew")

    async def _renew_loop(self) -> None:
        while True:
            await asyncio.sleep(self.lease_ms / 3000)
            for backend, members in list(self.held.items()):
                if members:
                    try:
                        async with asyncio.timeout(REDIS_DEADLINE):
                            await self._renew(keys=[self.prefix + backend], args=[self.lease_ms, *members])
                    except Exception as exc:
                        self._failed(exc)

    def _failed(self, exc: BaseException) -> None:
        self._retry_at = self._clock() + RETRY_INTERVAL
        if not self._down:
            self._down = True
            log.warning("Redis at %s failed (%s: %s); local in-flight requests are counted in this process only",
                        self.where, type(exc).__name__, exc)

    def _recovered(self) -> None:
        if self._down:
            self._down = False
            log.warning("Redis at %s is back; local in-flight requests are counted across workers again", self.where)


@dataclass
class LocalLoadState:
    """This worker's view: the lease tracker and measured speeds per Ollama model."""

    inflight: Inflight
    speeds: dict[str, Speed] = field(default_factory=dict)

    def load_of(self, backend_model: str, others: int, slots: int) -> LocalLoad:
        speed = self.speeds.get(backend_model) or Speed()
        return LocalLoad(others, slots, speed.tokens_per_second or DEFAULT_TOKENS_PER_SECOND,
                         speed.answer_tokens or DEFAULT_ANSWER_TOKENS)

    def record(self, backend_model: str, completion_tokens: int, rate: float | None) -> None:
        speed = self.speeds.setdefault(backend_model, Speed())
        if completion_tokens > 0:
            speed.answer_tokens = moving_average(speed.answer_tokens, completion_tokens)
        if rate is not None:
            speed.tokens_per_second = moving_average(speed.tokens_per_second, rate)


@functools.cache
def get_load() -> LocalLoadState:
    from hooks.runtime import get_runtime

    url = get_runtime().settings.redis_url
    return LocalLoadState(Inflight(url.get_secret_value() if url else None))


async def reserve(ctx, facts, runtime) -> BackendState:
    """Take a lease for a request that may go local; the backend state with the expected local waits."""
    state = runtime.monitor.state
    entry = runtime.policy.models.get(facts.model)
    if ctx is None or entry is None or entry.tier is Tier.CLOUD:
        return state
    try:
        load = get_load()
        ctx.local_lease = await load.inflight.acquire(BACKEND, ctx.request_id)
        slots = runtime.settings.routing.local_slots
        waits = {e.name: expected_wait(load.load_of(e.backend_model, ctx.local_lease.others, slots))
                 for e in runtime.policy.models.values() if e.tier is Tier.LOCAL}
        _publish(ctx.local_lease.others + 1, waits.get(runtime.policy.local_default))
        return replace(state, local_wait=waits)
    except Exception:  # fail open: no load information
        log.exception("could not read the local load")
        return state


async def settle(ctx, decision, runtime) -> None:
    """Keep the lease only for a request routed locally; count a spill to the cloud by its reason."""
    if ctx is None or ctx.local_lease is None:
        return
    if decision is not None and decision.route is Route.CLOUD:
        _count_spill(decision.reason.value)
    if decision is None or decision.route is not Route.LOCAL:
        await release(ctx)


async def release(ctx) -> None:
    lease, ctx.local_lease = ctx.local_lease, None
    if lease is None:
        return
    try:
        load = get_load()
        await load.inflight.release(BACKEND, lease)
        if lease.store == "memory":
            _publish(len(load.inflight.memory.get(BACKEND, ())), None)
    except Exception:
        log.exception("could not release a local lease")


def answer_rate(kwargs: dict, completion_tokens: int, end_time) -> float | None:
    """Tokens per second of one local answer (see the module docstring for where the numbers come from)."""
    raw = kwargs.get("original_response")
    if isinstance(raw, str) and raw.startswith("{") and '"eval_duration"' in raw:
        try:
            body = json.loads(raw)
            return tokens_per_second(body.get("eval_count"), (body.get("eval_duration") or 0) / 1e9)
        except ValueError:
            return None
    first = kwargs.get("completion_start_time")
    if first is not None and end_time is not None:  # a non-streamed answer has first == end: no rate
        return tokens_per_second(completion_tokens, (end_time - first).total_seconds())
    return None


def record_answer(backend_model: str, kwargs: dict, completion_tokens: int, end_time) -> None:
    """After a local answer: update the speed averages and the tokens/s gauge (never raises)."""
    try:
        state = get_load()
        state.record(backend_model, completion_tokens, answer_rate(kwargs, completion_tokens, end_time))
        rate = state.speeds[backend_model].tokens_per_second
        if rate is not None:
            from hooks import metrics

            metrics.LOCAL_TPS.labels(backend_model).set(rate)
    except Exception:
        log.exception("could not record the local speed")


def _publish(inflight: int, wait: float | None) -> None:
    from hooks import metrics  # late: prometheus_client must see PROMETHEUS_MULTIPROC_DIR first

    metrics.LOCAL_INFLIGHT.labels(BACKEND).set(inflight)
    if wait is not None:
        metrics.LOCAL_WAIT.set(wait)


def _count_spill(reason: str) -> None:
    from hooks import metrics

    metrics.SPILLS.labels(reason).inc()
