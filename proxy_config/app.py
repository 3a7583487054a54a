"""The ASGI app `gateway serve` runs: LiteLLM's proxy app behind a thin gateway layer.

The layer
- creates the per-request context (hooks.context) and returns it as `x-request-id`;
- stamps `x-gateway-route` / `x-gateway-reason` on every response, correcting the route
  when LiteLLM's router fell back to the other tier (it reads the served deployment from
  LiteLLM's `x-litellm-model-id` header, which LiteLLM refreshes after a stream fallback);
- answers `GET /health` from cached backend state (LiteLLM's own /health makes LLM calls);
- starts the backend monitor when LiteLLM's startup has completed.
"""

from __future__ import annotations

import json
import logging

from custom_router.policy import Route
from hooks import context
from hooks.runtime import deployment_of, get_runtime

log = logging.getLogger("gateway.app")


def route_headers(ctx: context.RequestContext, litellm_headers: dict[bytes, bytes]) -> list[tuple[bytes, bytes]]:
    decision = ctx.decision
    if decision is None:
        route, reason = "none", "not-routed"
    else:
        route, reason = decision.route.value, decision.reason.value
        served = deployment_of(litellm_headers.get(b"x-litellm-model-id", b"").decode() or None)
        tier = served[1] if served else None
        if tier in ("local", "cloud") and decision.route is not Route.NONE and tier != route:
            route, reason = tier, f"{decision.route.value}-error-fallback"
    return [(b"x-gateway-route", route.encode()), (b"x-gateway-reason", reason.encode())]


async def send_json(send, status: int, body: object, headers: tuple = ()) -> None:
    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()), *headers]})
    await send({"type": "http.response.body", "body": payload})


def health_body() -> tuple[int, dict]:
    """The original design's /health shape, from cached state only."""
    runtime = get_runtime()
    state = runtime.monitor.state
    ollama = "connected" if state.ollama_up else "unreachable"
    if runtime.settings.deepseek_api_key is None:
        deepseek = "no_api_key"
    else:
        deepseek = "connected" if state.cloud_ready else "unreachable"
    if state.ollama_up and deepseek == "connected":
        status = "healthy"
    elif state.ollama_up or deepseek == "connected":
        status = "degraded"
    else:
        status = "unhealthy"
    body = {"status": status, "ollama": ollama, "deepseek": deepseek, "models": sorted(state.installed)}
    return (503 if status == "unhealthy" else 200), body


async def health(scope, receive, send) -> None:
    status, body = health_body()
    await send_json(send, status, body)


# Paths the gateway answers itself, without LiteLLM (GET/HEAD only).
LOCAL_ROUTES = {"/health": health}


class GatewayApp:
    def __init__(self, inner) -> None:
        self.inner = inner

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await self.inner(scope, receive, self._lifespan_send(send))
            return
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        local = LOCAL_ROUTES.get(scope["path"])
        if local is not None and scope["method"] in ("GET", "HEAD"):
            await local(scope, receive, send)
            return
        ctx = context.RequestContext()
        token = context.current.set(ctx)

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += route_headers(ctx, dict(headers))
                headers.append((b"x-request-id", ctx.request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.inner(scope, receive, send_with_headers)
        finally:
            context.current.reset(token)

    def _lifespan_send(self, send):
        async def lifespan_send(message) -> None:
            if message["type"] == "lifespan.startup.complete":
                await get_runtime().monitor.start()
            await send(message)

        return lifespan_send


def create_app():
    from litellm.proxy.proxy_server import app as litellm_app

    return GatewayApp(guarded(litellm_app, get_runtime().settings))


def guarded(litellm_app, settings):
    """LiteLLM's app behind the request checks and error rewriting (proxy_config.errors) and the
    gateway's own CORS policy (proxy_config.cors)."""
    from proxy_config.chat_checks import largest_output_tokens
    from proxy_config.cors import StripCORSHeaders, cors_layer
    from proxy_config.errors import ErrorLayer, RequestLimits
    from proxy_config.settings import read_config

    limits = RequestLimits(settings.max_body_bytes, max_output_tokens=largest_output_tokens(read_config(settings.config_path)))
    return cors_layer(ErrorLayer(StripCORSHeaders(litellm_app), limits), settings.cors_origins)


app = create_app()
