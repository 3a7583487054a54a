"""Load of the local tier: requests in flight to Ollama, and its measured speed per model.

In flight: every request that may be served locally takes a lease before the routing policy
decides (`reserve`), so what it sees is exact and atomic across workers: with Redis (REDIS_URL)
the leases are members of one sorted set per backend, scored by their expiry (Redis's own
clock), taken and read by one Lua script; without Redis they are a dict in this process. Each
lease names when it was taken (Redis's clock, or this process's) and how long its answer should
take (custom_router.load.answer_seconds), so the policy gets the other requests in flight as
plain data (`Pending`: age and expected seconds), turned into an expected wait by
custom_router.load. A request that is not routed locally gives its lease back at once
(`settle`), a local one when its response is over (gateway.app). So two workers can
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

from custom_router.load import LocalLoad, Pending, answer_seconds, expected_wait, moving_average, tokens_per_second
from custom_router.policy import BackendState, Route, Tier
from hooks.ratelimit import REDIS_DEADLINE, RETRY_INTERVAL, redis_client, redis_location

log = logging.getLogger("gateway.inflight")

BACKEND = "ollama"  # one Ollama per gateway (OLLAMA_URL); its slots are shared by all local models
LEASE_SECONDS = 60.0

# KEYS[1] leases (sorted set, score = expiry ms, member = "id|taken ms|expected seconds"); ARGV[1] id,
# ARGV[2] lease ms, ARGV[3] expected seconds. Returns {now ms, this member, the other members}.
ACQUIRE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local others = redis.call('ZRANGE', KEYS[1], 0, -1)
local member = ARGV[1] .. '|' .. now .. '|' .. ARGV[3]
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), member)
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
return {now, member, others}
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
    others: tuple[Pending, ...]  # the leases held when this one was taken, this one not included
    store: str  # "redis" or "memory": where to give it back


def _pending(member: bytes | str, now_ms: int) -> Pending | None:
    """A Redis lease member ("id|taken ms|expected seconds") as plain data; None if malformed."""
    text = member.decode() if isinstance(member, bytes) else member
    try:
        _, taken, seconds = text.rsplit("|", 2)
        return Pending((now_ms - int(taken)) / 1000, float(seconds))
    except ValueError:
        return None


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
        self.memory: dict[str, dict[str, tuple[float, float]]] = {}  # backend -> member -> (taken, seconds)
        self.held: dict[str, set[str]] = {}  # this process's Redis leases, for renewal
        self._clock = clock
        self._retry_at = 0.0
        self._down = False
        self._renewer: asyncio.Task | None = None
        if self.client is not None:
            self._acquire = self.client.register_script(ACQUIRE_LUA)
            self._renew = self.client.register_script(RENEW_LUA)

    async def acquire(self, backend: str, request_id: str, seconds: float = 0.0) -> Lease:
        """Take a lease for a request expected to generate for `seconds`; see the others in flight."""
        if self.client is not None and self._clock() >= self._retry_at:
            try:
                async with asyncio.timeout(REDIS_DEADLINE):
                    now, member, others = await self._acquire(keys=[self.prefix + backend],
                                                              args=[request_id, self.lease_ms, f"{seconds:.3f}"])
            except Exception as exc:  # never fail a request for Redis: count in memory
                self._failed(exc)
            else:
                self._recovered()
                member = member.decode() if isinstance(member, bytes) else member
                self.held.setdefault(backend, set()).add(member)
                self._start_renewer()
                pending = tuple(p for p in (_pending(m, int(now)) for m in others) if p is not None)
                return Lease(member, pending, "redis")
        leases, now = self.memory.setdefault(backend, {}), self._clock()
        others = tuple(Pending(now - taken, expected) for taken, expected in leases.values())
        leases[request_id] = (now, seconds)
        return Lease(request_id, others, "memory")

    async def release(self, backend: str, lease: Lease) -> None:
        if lease.store == "memory":
            self.memory.get(backend, {}).pop(lease.member, None)
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

    def answer_seconds(self, backend_model: str, max_tokens: int | None) -> float:
        """How long an answer of this model should take, from what was measured (else the defaults)."""
        speed = self.speeds.get(backend_model) or Speed()
        return answer_seconds(max_tokens, speed.answer_tokens, speed.tokens_per_second)

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
        local = entry if entry.tier is Tier.LOCAL else runtime.policy.models.get(runtime.policy.local_default, entry)
        seconds = load.answer_seconds(local.backend_model, facts.max_tokens)
        ctx.local_lease = await load.inflight.acquire(BACKEND, ctx.request_id, seconds)
        wait = expected_wait(LocalLoad(ctx.local_lease.others, runtime.settings.routing.local_slots))
        _publish(len(ctx.local_lease.others) + 1, wait)
        return replace(state, local_wait={e.name: wait for e in runtime.policy.models.values() if e.tier is Tier.LOCAL})
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
