"""Per-request state shared by the ASGI wrapper and the LiteLLM callbacks.

The wrapper (gateway.app) creates a `RequestContext` and sets it in a ContextVar before
LiteLLM sees the request; tasks LiteLLM spawns copy the context, so callbacks running in
them mutate the same object.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from custom_router.policy import Decision, Reason
if TYPE_CHECKING:  # only a type: the limiter is not imported with the request state
    from hooks.ratelimit import Verdict


@dataclass
class Usage:
    """Tokens of one response, from the backend's usage or counted (`counted=True`)."""

    prompt: int = 0
    completion: int = 0  # includes reasoning tokens, as both backends bill them
    reasoning: int = 0
    cached: int = 0
    counted: bool = False


@dataclass
class RequestContext:
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    started: float = field(default_factory=time.perf_counter)
    decision: Decision | None = None
    # Observability (hooks.usage fills these from LiteLLM callbacks, gateway.app from the response).
    key_hash: str | None = None  # the short id, proxy_config.keys.key_id (sha256:1a2b3c4d), never the digest
    requested_model: str | None = None
    served_model: str | None = None
    usage: Usage | None = None
    fallback_cause: str | None = None
    error_type: str | None = None
    backend_failures: int = 0
    logged: asyncio.Event = field(default_factory=asyncio.Event)  # set by every LiteLLM success/failure event
    # Rate limiting (hooks.auth sets it for client keys; gateway.app stamps x-ratelimit-* from it).
    rate_limit: Verdict | None = None
    # Set before routing when this request may not use the cloud (Reason.BUDGET, Reason.LOCAL_ONLY).
    cloud_denied: Reason | None = None
    # What the routing hook changed for the model that served (x-gateway-clamped, x-gateway-dropped-params).
    clamped: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    reply_schema: dict | None = None  # a translated json_schema the cloud's reply must match
    # hooks.routing's (status, message, param, code) for a request it refused or no tier could serve (the both-tiers
    # 503); gateway.errors sends it, as LiteLLM's /v1/messages handler drops the code and ignores what the
    # failure hook returned.
    final_error: tuple[int, str, str | None, str | None] | None = None
    # Cost controls (hooks.cache, hooks.budgets; gateway.app stamps x-gateway-cache and the budget header).
    client_key: object | None = None  # the proxy_config.keys.ClientKey that hooks.auth admitted
    cache_headers: dict[str, str] = field(default_factory=dict)  # the client's cache headers, lower-case names
    cache: str | None = None  # hit | miss | bypass; None when the cache is off or not used
    cache_store: tuple[str, str, int] | None = None  # (scope, parameters as JSON, ttl) of an answer to store
    budget_key: str | None = None  # sha256 of a client key with a cloud budget: its cloud cost is charged
    budget_remaining: float | None = None  # USD left this month, before this request
    local_lease: object | None = None  # hooks.inflight.Lease while this request counts as in flight to Ollama
    turn: object | None = None  # hooks.responses.Turn: a Responses API request's conversation, to store its response
    # The key the request presented (gateway.gate, by LiteLLM's header precedence); hooks.auth
    # checks LiteLLM authenticated the same one and sets `key_hash` from it. Never logged.
    presented_key: str | None = field(default=None, repr=False)


current: ContextVar[RequestContext | None] = ContextVar("gateway_request", default=None)
