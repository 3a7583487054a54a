"""The response cache on Redis (config.yaml: `hooks.cache.instance`, listed after
`hooks.routing.instance`, so the decided model group is known). On when
`response_cache_ttl` (RESPONSE_CACHE_TTL) is over 0 and REDIS_URL is set.

- pre-call: `hooks.cost_rules.cache_plan` says whether this request may read and write the
  cache (client headers, temperature, n); the key is `cost_rules.cache_key` of the scope (the
  key's sha256, or `shared`), the decided model group and the answer-changing parameters. A hit
  is handed to LiteLLM as the request's `mock_response` (a full `ModelResponse`: content,
  reasoning, tool calls, usage) with no fallbacks, so LiteLLM answers it without calling a
  backend, as JSON or as an SSE stream ending in `[DONE]`, through the same callbacks as any
  answer; `ctx.cache` says hit, miss or bypass (the `x-gateway-cache` header, the ledger);
- success: a miss (or a no-cache bypass) whose every choice finished is stored under the key of
  the model group that actually served, for the plan's TTL (SET EX), unless `no-store`.
Why not LiteLLM's own cache: docs/costs.md.

How it fails: open. Without a working Redis (the rate limiter's connection and outage
handling, hooks.ratelimit) every request is a miss and nothing is stored; a stored entry that
no longer parses is a miss. A bad `x-gateway-cache-ttl` header is the client's mistake: 400.
"""

from __future__ import annotations

import json
import logging

from litellm import ModelResponse
from litellm.integrations.custom_logger import CustomLogger
from litellm.proxy._types import ProxyException

from custom_router.policy import Route
from hooks import context
from hooks.cost_rules import BadCacheHeader, cache_key, cache_params, cache_plan
from hooks.ratelimit import get_limiter
from hooks.routing import CACHED_CALL_TYPES
from hooks.runtime import get_runtime

log = logging.getLogger("gateway.cache")

PREFIX = "gateway:cache:"
CLIENT_HEADERS = (b"cache-control", b"x-gateway-cache-ttl", b"x-gateway-cache")
FINISHED = frozenset({"stop", "length", "tool_calls", "function_call", "content_filter"})


def client_headers(scope) -> dict[str, str]:
    """The request's cache headers (gateway.app keeps them on the request context)."""
    return {name.decode(): value.decode("latin-1") for name, value in scope.get("headers") or ()
            if name in CLIENT_HEADERS}


def complete(response) -> bool:
    choices = getattr(response, "choices", None) or []
    return bool(choices) and all(getattr(c, "finish_reason", None) in FINISHED for c in choices)


class CacheHook(CustomLogger):
    async def async_pre_call_hook(self, user_api_key_dict, cache, data: dict, call_type):
        ctx = context.current.get()
        if (
            call_type not in CACHED_CALL_TYPES
            or ctx is None
            or ctx.decision is None
            or ctx.decision.route is Route.NONE
        ):
            return data
        settings = get_runtime().settings.routing
        try:
            plan = cache_plan(data, ctx.cache_headers, settings.response_cache_ttl, settings.cache_max_temperature)
        except BadCacheHeader as exc:
            raise ProxyException(message=str(exc), type="invalid_cache_ttl", param="x-gateway-cache-ttl", code=400)
        if plan is None or get_limiter().redis is None:
            return data
        try:
            scope = (
                "shared" if settings.cache_scope == "shared" else (getattr(user_api_key_dict, "api_key", None) or "-")
            )
            params = cache_params(data)
            ctx.cache = "bypass"
            if plan.read:
                name = PREFIX + cache_key(scope, ctx.decision.model, params)
                ok, stored = await get_limiter().redis_call(lambda redis: redis.get(name))
                if ok and stored:
                    data["mock_response"] = ModelResponse(**json.loads(stored))
                    data["fallbacks"] = []
                    ctx.cache = "hit"
                    return data
                ctx.cache = "miss"
            if plan.write:
                ctx.cache_store = (scope, json.dumps(params, default=str), plan.ttl)
        except Exception:  # fail open: the request goes to the backend
            log.exception("cache lookup failed")
        return data

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        try:
            ctx = context.current.get()
            if ctx is None or ctx.cache_store is None or ctx.cache == "hit" or not complete(response_obj):
                return
            scope, params, ttl = ctx.cache_store
            group = (kwargs.get("standard_logging_object") or {}).get("model_group") or kwargs.get("model")
            name = PREFIX + cache_key(scope, group, json.loads(params))
            body = (
                response_obj.model_dump_json() if hasattr(response_obj, "model_dump_json") else json.dumps(response_obj)
            )
            await get_limiter().redis_call(lambda redis: redis.set(name, body, ex=ttl))
        except Exception:  # a logging callback must never break a request
            log.exception("cache store failed")


instance = CacheHook()
