"""The monthly cloud spend of client keys, in Redis: the counters hooks.budgets reads and
hooks.ledger charges. A key's spend is `gateway:budget:<sha256>:<YYYY-MM>` (UTC month), integer
nano-USD (INCRBY: exact sums), kept 40 days; a new month is a new counter, which is the reset.

Every function takes the worker's limiter (hooks.ratelimit) and uses its Redis connection,
timeouts and outage handling.

How it fails: without a working Redis, spend counts in this process's memory, from zero (so
during an outage a key can spend its budget once more per worker); nothing here raises for Redis.
"""

from __future__ import annotations

from hooks.cost_rules import USD_UNITS, month_of, to_units

PREFIX = "gateway:budget:"
KEEP_SECONDS = 40 * 86400  # a month's counter outlives its month
_memory: dict[str, int] = {}  # the per-process counters used without a working Redis


def counter(digest: str, ts: float) -> str:
    return f"{PREFIX}{digest}:{month_of(ts)}"


async def spent_usd(limiter, digest: str, ts: float) -> float:
    name = counter(digest, ts)
    ok, value = await limiter.redis_call(lambda redis: redis.get(name))
    units = int(value or 0) if ok else _memory.get(name, 0)
    return units / USD_UNITS


async def charge(limiter, digest: str, usd: float, ts: float) -> None:
    units = to_units(usd)
    if units <= 0:
        return
    name = counter(digest, ts)

    async def incr(redis):
        async with redis.pipeline(transaction=True) as pipe:
            pipe.incrby(name, units)
            pipe.expire(name, KEEP_SECONDS)
            return await pipe.execute()

    ok, _ = await limiter.redis_call(incr)
    if not ok:
        _memory[name] = _memory.get(name, 0) + units


async def charge_record(limiter, ctx, record) -> None:
    """Charge a finished request's cloud cost to its key (hooks.ledger, after the last byte)."""
    if ctx.budget_key is not None and record.route == "cloud" and record.cost_usd > 0:
        await charge(limiter, ctx.budget_key, record.cost_usd, record.ts)
