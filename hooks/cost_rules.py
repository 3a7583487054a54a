"""Pure rules of the cost controls: when a response may be cached, under which key, and the
budget month. No I/O and no LiteLLM here, so every rule is testable with plain data
(hooks.cache and hooks.budgets are the adapters that use them).

Cache key: sha256 of the scope (a key's sha256, or `shared`), the model group that serves,
and every request parameter except those that cannot change the answer (`stream`,
`stream_options`, `user`, `metadata`) and the gateway's and LiteLLM's own bookkeeping
(`litellm_*`, `_*`, ids, fallbacks). Anything unknown is part of the key: an unknown
parameter costs a hit, never a wrong answer.

How it fails: `cache_plan` raises `BadCacheHeader` for an `x-gateway-cache-ttl` that is not a
whole number of seconds (the hook answers 400); nothing else here raises on any input.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

DEFAULT_TEMPERATURE = 1.0  # OpenAI's documented default when a request sends none
NOT_ANSWER_CHANGING = frozenset({
    "model", "stream", "stream_options", "user", "metadata", "litellm_metadata", "proxy_server_request",
    "secret_fields",
    "fallbacks", "mock_response", "api_key", "api_base", "timeout", "request_timeout", "num_retries", "tags", "ttl",
})


class BadCacheHeader(ValueError):
    """A cache header the client sent cannot be understood; the message says what to send."""


@dataclass(frozen=True)
class CachePlan:
    read: bool  # look the answer up
    write: bool  # store a fresh answer
    ttl: int  # seconds a stored answer lives
    why: str = ""  # why the cache is bypassed, for logs

    @property
    def bypass(self) -> bool:
        return not self.read


def cache_plan(body: Mapping, headers: Mapping[str, str], ttl: int, max_temperature: float) -> CachePlan | None:
    """What the cache may do for one request, or None when the cache is off (ttl 0).

    `headers` are the request's, lower-case names: Cache-Control `no-cache` (do not read) and
    `no-store` (do not write), `x-gateway-cache-ttl` (shorten the TTL), `x-gateway-cache: force`
    (cache even a sampled answer: temperature over the limit, or n > 1)."""
    if ttl <= 0:
        return None
    directives = {d.strip().split("=", 1)[0].lower() for d in headers.get("cache-control", "").split(",")}
    read, write, why = "no-cache" not in directives, "no-store" not in directives, ""
    raw_ttl = headers.get("x-gateway-cache-ttl")
    if raw_ttl is not None:
        if not raw_ttl.strip().isdigit():
            raise BadCacheHeader("x-gateway-cache-ttl must be a whole number of seconds, e.g. 60; "
                                 f"got {raw_ttl[:40]!r}")
        ttl = min(ttl, int(raw_ttl))
        write = write and ttl > 0
    temperature = body.get("temperature")
    temperature = DEFAULT_TEMPERATURE if temperature is None else temperature
    n = body.get("n") or 1
    forced = headers.get("x-gateway-cache", "").strip().lower() == "force"
    if not forced and (not isinstance(temperature, (int, float)) or temperature > max_temperature
                       or not isinstance(n, int) or n > 1):
        read, write, why = False, False, "sampled (temperature or n)"
    elif not read:
        why = "no-cache"
    return CachePlan(read, write, ttl, why)


def cache_params(body: Mapping) -> dict:
    """The parameters of a request that can change its answer (messages included)."""
    return {k: v for k, v in body.items()
            if k not in NOT_ANSWER_CHANGING and not k.startswith(("litellm_", "_", "user_api_key"))}


def cache_key(scope: str, model_group: str, params: Mapping) -> str:
    """The Redis key (without prefix) of one request's answer from `model_group` (`params`: cache_params)."""
    material = json.dumps([scope, model_group, params], sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(material.encode()).hexdigest()


def month_of(ts: float) -> str:
    """The budget month (UTC) of a unix time: `2026-12`."""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m")


def next_reset(ts: float) -> datetime:
    """When the budget month of `ts` ends: the first of the next month, 00:00 UTC."""
    now = datetime.fromtimestamp(ts, timezone.utc)
    year, month = (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)
    return datetime(year, month, 1, tzinfo=timezone.utc)


def reset_text(ts: float) -> str:
    return next_reset(ts).strftime("%Y-%m-%d 00:00 UTC")


def month_start_ts(ts: float) -> float:
    now = datetime.fromtimestamp(ts, timezone.utc)
    return datetime(now.year, now.month, 1, tzinfo=timezone.utc).timestamp()


def cloud_spend_by_key(rows: Iterable[Mapping]) -> dict[str, float]:
    """USD of cloud-served requests per key id (`sha256:` prefix): what budgets count (hooks.budgets)."""
    spend: dict[str, float] = {}
    for row in rows:
        if row["route"] == "cloud" and row["key_hash"]:
            spend[row["key_hash"]] = spend.get(row["key_hash"], 0.0) + (row["cost_usd"] or 0.0)
    return spend


USD_UNITS = 1_000_000_000  # spend is counted in Redis as integer nano-USD: exact sums, no float drift


def to_units(usd: float) -> int:
    return round(usd * USD_UNITS)
