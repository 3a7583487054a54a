"""Per-request state shared by the ASGI wrapper and the LiteLLM callbacks.

The wrapper (proxy_config.app) creates a `RequestContext` and sets it in a ContextVar before
LiteLLM sees the request; tasks LiteLLM spawns copy the context, so callbacks running in
them mutate the same object.
"""

from __future__ import annotations

import time
import uuid
from contextvars import ContextVar
from dataclasses import dataclass, field

from custom_router.policy import Decision


@dataclass
class RequestContext:
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    started: float = field(default_factory=time.perf_counter)
    decision: Decision | None = None


current: ContextVar[RequestContext | None] = ContextVar("gateway_request", default=None)
