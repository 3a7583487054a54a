"""The ASGI app `gateway serve` runs: LiteLLM's proxy app behind a thin gateway layer.

The layer
- creates the per-request context (hooks.context) and returns it as `x-request-id`;
- stamps `x-gateway-route` / `x-gateway-reason` on every response (and `x-gateway-cache`,
  `x-gateway-budget-remaining-usd` when hooks.cache / hooks.budgets set them), correcting the route
  when LiteLLM's router fell back to the other tier (it reads the served deployment from
  LiteLLM's `x-litellm-model-id` header, which LiteLLM refreshes after a stream fallback);
- strips LiteLLM's internal response headers (`x-litellm-*`: internal URLs, version, spend,
  cost; `llm_provider-*`: the backend's own headers) after the route and the ledger read them;
- marks `GET /v1/models` entries with their tier and whether they can answer now
  (proxy_config.model_listing);
- answers `GET /health` from cached backend state (LiteLLM's own /health makes LLM calls)
  and `GET /metrics` (hooks.metrics);
- hands every inference response to the ledger (hooks.ledger) once its last byte is sent;
- puts LiteLLM's requests to Ollama and DeepSeek under the progress deadlines
  (proxy_config.deadline_transport);
- cancels an inference request whose client disconnects before its response is complete
  (`until_disconnect`): LiteLLM's call is cancelled, which closes the upstream connection, so
  Ollama stops generating and its runner slot is free again; the ledger records
  `client-cancelled` (status 499); the request's local lease (hooks.inflight) is given back
  when the request ends, however it ends;
- marks a request local-only (the cloud may not serve it) when it carries
  `x-gateway-local-only: true` (a key's `local_only` is applied by hooks.auth);
- starts the backend monitor when LiteLLM's startup has completed, and moves garbage
  collection onto the event loop (proxy_config.gcguard: a CPython crash before 3.12);
  flushes the ledger at shutdown.
"""

from __future__ import annotations

import asyncio
import logging

from custom_router.policy import Reason, Route
from hooks import cache, context, inflight, ledger, metrics, ratelimit
from hooks.backends import health_report
from hooks.runtime import deployment_of, get_runtime
from gateway import gate, logs
from gateway.errors import send_json
from litellm_compat import shims
from proxy_config import deadline_transport, gcguard, model_listing

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
    headers = [(b"x-gateway-route", route.encode()), (b"x-gateway-reason", reason.encode())]
    if ctx.clamped:
        headers.append((b"x-gateway-clamped", ",".join(ctx.clamped).encode()))
    if ctx.dropped:
        headers.append((b"x-gateway-dropped-params", ",".join(ctx.dropped).encode()))
    if ctx.cache is not None:
        headers.append((b"x-gateway-cache", ctx.cache.encode()))
    if ctx.budget_remaining is not None:
        headers.append((b"x-gateway-budget-remaining-usd", f"{ctx.budget_remaining:.6f}".encode()))
    return headers


def health_body() -> tuple[int, dict]:
    """From cached state only (the Ollama poll, and what cloud requests saw): no backend call."""
    runtime = get_runtime()
    state = runtime.monitor.state
    return health_report(state.ollama_up, runtime.settings.deepseek_api_key is not None,
                         runtime.monitor.cloud_reachable, state.installed)


async def health(scope, receive, send) -> None:
    status, body = health_body()
    await send_json(send, status, body)


LOCAL_ONLY_HEADER = b"x-gateway-local-only"


def wants_local_only(scope) -> bool:
    return any(name == LOCAL_ONLY_HEADER and value.strip().lower() in (b"true", b"1", b"yes")
               for name, value in scope.get("headers") or ())


async def until_disconnect(app, scope, receive, send) -> bool:
    """Run `app`; cancel it when the client disconnects before the response is complete.

    Only this wrapper reads the server's `receive`: it hands the request body on to the app and
    then waits for `http.disconnect` (which servers also send once a response is complete, so a
    disconnect counts only before that). Returns True when the request was cancelled."""
    queue: asyncio.Queue = asyncio.Queue()
    complete = False
    gone: dict | None = None

    async def pump() -> None:
        nonlocal gone
        while gone is None:
            message = await receive()
            if message["type"] == "http.disconnect":
                gone = message
            await queue.put(message)

    async def app_receive():
        return gone if gone is not None and queue.empty() else await queue.get()

    async def app_send(message) -> None:
        nonlocal complete
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            complete = True
        await send(message)

    task = asyncio.ensure_future(app(scope, app_receive, app_send))
    reader = asyncio.ensure_future(pump())
    try:
        while not task.done():
            await asyncio.wait({task, reader}, return_when=asyncio.FIRST_COMPLETED)
            if reader.done() and not task.done():
                if gone is not None and not complete:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
                    return True
                await task
        task.result()
        return False
    finally:
        for pending in (task, reader):
            if not pending.done():
                pending.cancel()
                await asyncio.gather(pending, return_exceptions=True)


# Paths the gateway answers itself, without LiteLLM (GET/HEAD only).
LOCAL_ROUTES = {"/health": health, "/metrics": metrics.endpoint}


def model_facts():
    """What GET /v1/models marks each model with (proxy_config.model_listing)."""
    runtime = get_runtime()
    cloud_ready = runtime.settings.deepseek_api_key is not None and runtime.monitor.cloud_reachable
    return runtime.policy, runtime.monitor.state, cloud_ready
INTERNAL_HEADERS = (b"x-litellm-", b"llm_provider-")


def public_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return [(k, v) for k, v in headers if not k.lower().startswith(INTERNAL_HEADERS)]


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
        if wants_local_only(scope):
            ctx.cloud_denied = Reason.LOCAL_ONLY
        token = context.current.set(ctx)
        tracker = ledger.track(ctx, scope)  # None unless an inference path
        ctx.cache_headers = cache.client_headers(scope)

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += route_headers(ctx, dict(headers))
                headers.append((b"x-request-id", ctx.request_id.encode()))
                if ctx.rate_limit is not None:  # set by hooks.auth for client keys
                    headers = ratelimit.stamp(headers, ctx.rate_limit)
                if tracker is not None:
                    tracker.sent({**message, "headers": headers})  # the ledger reads x-litellm-model-id
                await send({**message, "headers": public_headers(headers)})
                return
            await send(message)
            if tracker is not None:
                tracker.sent(message)

        if scope["method"] == "GET" and model_listing.is_listing(scope["path"]):
            send_with_headers = model_listing.marking(send_with_headers, model_facts)
        try:
            if tracker is None:
                await self.inner(scope, receive, send_with_headers)
            elif await until_disconnect(self.inner, scope, receive, send_with_headers):
                ctx.error_type = "client-cancelled"
                tracker.client_gone()
        finally:
            if tracker is not None:
                tracker.close()
            if ctx.local_lease is not None:
                await inflight.release(ctx)
            context.current.reset(token)

    def _lifespan_send(self, send):
        async def lifespan_send(message) -> None:
            if message["type"] == "lifespan.startup.complete":
                logs.adopt_litellm_loggers()
                metrics.litellm_shims(shims.after_startup(get_runtime().settings))
                gate.trust_proxies(get_runtime().settings)  # LiteLLM's UI login throttle: per real client
                gcguard.install(asyncio.get_running_loop())  # CPython gh-148891 (Python < 3.12)
                await get_runtime().monitor.start()
            elif message["type"] == "lifespan.shutdown.complete":
                await ledger.shutdown()
            await send(message)

        return lifespan_send


def create_app():
    from litellm.proxy.proxy_server import app as litellm_app

    metrics.litellm_shims(shims.apply(litellm_app, get_runtime().settings))  # docs/performance.md; published, logged
    deadline_transport.install(get_runtime().settings)  # first-token and stall deadlines (docs/reliability.md)
    logs.adopt_litellm_loggers()
    return GatewayApp(guarded(litellm_app, get_runtime().settings))


def guarded(litellm_app, settings):
    """LiteLLM's app behind the front door (gateway.gate: routes, keys, anonymous limits),
    the request checks and error rewriting (gateway.errors) and the gateway's own CORS
    policy (gateway.cors)."""
    from proxy_config.chat_checks import largest_output_tokens
    from gateway.cors import cors_layer, strip_litellm_cors
    from gateway.error_layer import ErrorLayer, RequestLimits
    from proxy_config.settings import read_config
    from gateway.stored_responses import StoredResponses

    config = read_config(settings.config_path)
    limits = RequestLimits(settings.max_body_bytes, max_output_tokens=largest_output_tokens(config),
                           models=served_models(config), max_n=max_n(config, settings.routing),
                           body_check=gate.litellm_banned_fields)
    # StoredResponses answers GET /v1/responses/{id} itself: the gate has checked the key by then
    inner = StoredResponses(ErrorLayer(strip_litellm_cors(litellm_app), limits))
    return cors_layer(gate.Gate(inner, settings, db_mode=settings.db_mode), settings.cors_origins)


def served_models(config: dict) -> frozenset[str]:
    return frozenset(
        str(e["model_name"]) for e in config.get("model_list") or [] if isinstance(e, dict) and e.get("model_name")
    )


def max_n(config: dict, routing) -> dict[str, int]:
    """The `n` cap per model group: max_n_cloud for cloud models, max_n_local for local and auto."""
    caps = {}
    for entry in config.get("model_list") or []:
        tier = str(((entry.get("model_info") or {}).get("gateway_tier")) or "local")
        caps[str(entry.get("model_name"))] = routing.max_n_cloud if tier == "cloud" else routing.max_n_local
    return caps


app = create_app()
