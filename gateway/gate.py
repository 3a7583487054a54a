"""The gateway's front door: which paths answer whom, decided from the request line and headers
before a byte of the body is read.

The route policy, in one place (`classify`):
- PROBES answer everyone, unlimited: /health, /health/liveliness (and its alias /health/liveness),
  /health/readiness, /metrics;
- the admin UI's login page (UI_PATHS, /ui/...) answers anyone;
- DOCS (/openapi.json, /docs, /redoc, /routes, /, /public/..., the MCP docs) need the master key,
  unless PUBLIC_DOCS=true opens them;
- NOT_SERVED paths answer 404 for everyone, the master key included: LiteLLM's OpenAI routes this
  product does not serve (files, batches, assistants, threads, vector stores, fine-tuning,
  audio, images, realtime, rerank, ...), its provider pass-through routes (/langfuse, /vertex_ai,
  /openai/..., ...), Google's generateContent routes, /register, event logging, /sso, MCP OAuth
  discovery, /config/yaml, /test;
- every other path needs a key: the master key reaches everything else, a client key the
  OpenAI routes that are served (hooks.auth answers 403 on LiteLLM's admin routes).

Per request, in this order: 404 for a path not served; the key, read once with LiteLLM's own
header precedence (hooks.auth.identify_scope; recorded on the request context, which
hooks.auth then checks against what LiteLLM authenticated); for a caller without a valid key a
per-address limit (ANON_RATE_LIMIT_REQUESTS per ANON_RATE_LIMIT_WINDOW), then its 401; a client
key on a route that is not a client route (the docs, LiteLLM's admin API) gets 403; a body on an
inference endpoint whose Content-Type is not JSON gets 415. The client address is the one
uvicorn resolved: `gateway serve` passes TRUSTED_PROXIES as uvicorn's `forwarded_allow_ips`, so
X-Forwarded-For counts only from those peers, walked right to left (a forged left-most entry is
skipped); LiteLLM's admin UI login throttle gets the same list (`trust_proxies`). uvicorn discards a
body the app never read, so an anonymous 4 MB body costs a read, never a parse.

How it fails: every rejection is an OpenAI-shaped error (gateway.errors.error_body; in
Anthropic's shape on /v1/messages, gateway.errors.send_error). The
anonymous limiter is hooks.ratelimit's, so it fails open to memory when Redis is down.
"""

from __future__ import annotations

import enum
import functools
import re

from litellm.proxy._types import LiteLLMRoutes

from hooks import context
from hooks.auth import EXTRA_CLIENT_ROUTES, identify_scope, rejection
from hooks.ledger import is_inference
from hooks.ratelimit import Limits, get_limiter
from hooks.ratelimit import headers as limit_headers
from proxy_config.chat_checks import RequestRejected
from gateway.errors import error_body, send_error


class Access(enum.Enum):
    PROBE = "probe"
    UI = "ui"
    DOCS = "docs"
    NOT_SERVED = "not-served"
    API = "api"


PROBES = frozenset({"/health", "/health/liveliness", "/health/liveness", "/health/readiness", "/metrics", "/metrics/"})
UI_PATHS = frozenset({"/ui", "/login", "/v2/login", "/.well-known/litellm-ui-config",
                      "/litellm/.well-known/litellm-ui-config", "/get/ui_theme_settings", "/get_image"})
DOCS = frozenset({"/", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json", "/routes",
                  "/mcp/openapi.json", "/mcp/docs", "/mcp/redoc"})
DOCS_PREFIXES = ("/public/",)

# LiteLLM's OpenAI routes that this product serves; the rest of LiteLLMRoutes.openai_routes is not served.
SERVED = frozenset({
    "/chat/completions", "/v1/chat/completions", "/engines/{model}/chat/completions",
    "/openai/deployments/{model}/chat/completions",
    "/completions", "/v1/completions", "/engines/{model}/completions", "/openai/deployments/{model}/completions",
    "/embeddings", "/v1/embeddings", "/engines/{model}/embeddings", "/openai/deployments/{model}/embeddings",
    "/responses", "/v1/responses", "/models", "/v1/models",
    "/responses/{response_id}", "/v1/responses/{response_id}", "/responses/{response_id}/input_items",
    "/v1/responses/{response_id}/input_items",  # answered from the gateway's store (gateway.stored_responses)
}) | EXTRA_CLIENT_ROUTES
# LiteLLM routes that look like a served route's template (/v1/responses/{response_id}) but are not served.
NOT_SERVED_LOOKALIKES = frozenset({"/responses/input_tokens", "/v1/responses/input_tokens"})
NOT_SERVED_EXTRA = (
    "/register", "/{name}/register", "/api/event_logging/*", "/sso/*", "/fallback/login", "/config/yaml", "/test",
    "/moyai/*", "/.well-known/*", "/litellm/.well-known/*", "/authorize", "/token", "/introspect",
    "/v1/skills", "/v1/skills/*", "/claude-code/*", "/claude_code_gateway/*",
)


def _pattern(route: str) -> str:
    """A LiteLLM route (`/x/{id}`, `/x/*`, `/models/{name:path}:generateContent`) as a regex."""
    def segment(part: str) -> str:
        if part == "*":
            return ".*"
        pieces = re.split(r"(\{[^}]+\})", part)
        return "".join(
            (".+" if p.endswith(":path}") else "[^/]+") if p.startswith("{") else re.escape(p) for p in pieces
        )

    return "/".join(segment(p) for p in route.split("/"))


def _compile(routes) -> re.Pattern[str]:
    return re.compile("(?:" + "|".join(sorted(_pattern(r) for r in routes)) + r")/?\Z")


_SERVED = _compile(SERVED)
_NOT_SERVED = _compile((set(LiteLLMRoutes.openai_routes.value) - SERVED)
                       | set(LiteLLMRoutes.passthrough_routes_wildcard.value)
                       | set(LiteLLMRoutes.mapped_pass_through_routes.value) | set(LiteLLMRoutes.google_routes.value)
                       | set(NOT_SERVED_EXTRA))


@functools.lru_cache(maxsize=4096)
def classify(path: str) -> Access:
    if path in PROBES:
        return Access.PROBE
    if path in UI_PATHS or path.startswith("/ui/"):
        return Access.UI
    if path in DOCS or path.startswith(DOCS_PREFIXES):
        return Access.DOCS
    if _SERVED.match(path) and path.rstrip("/") not in NOT_SERVED_LOOKALIKES:
        return Access.API
    if _NOT_SERVED.match(path):
        return Access.NOT_SERVED
    return Access.API


def not_served(method: str, path: str) -> dict:
    return error_body(404, f"{method} {path} is not served by this gateway; it serves the OpenAI API's chat "
                           "completions, completions, embeddings, responses and models, and Anthropic's messages, "
                           "under /v1.", None, "not_served")


def unsupported_media(method: str, path: str, content_type: str) -> dict:
    return error_body(
        415,
        f"{method} {path} takes a JSON body; send it with the header 'Content-Type: application/json' "
        f"(got {content_type[:60]!r}).",
        None,
        "unsupported_media_type",
    )


class Gate:
    """ASGI middleware in front of gateway.error_layer.ErrorLayer (see the module docstring)."""

    def __init__(self, app, settings, db_mode: bool = False) -> None:
        self.app = app
        self.allow_query_key = settings.allow_query_api_key
        self.public_docs = settings.public_docs
        self.db_mode = db_mode
        self.anon_limits = Limits(settings.anon_rate_limit_requests, settings.anon_rate_limit_window)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        access = classify(path)
        if access is Access.PROBE:
            await self.app(scope, receive, send)
            return
        if access is Access.NOT_SERVED:
            await send_error(send, 404, not_served(method, path), path=path)
            return
        identity = identify_scope(scope, path, self.allow_query_key, self.db_mode)
        ctx = context.current.get()
        if ctx is not None and identity.authenticated:
            ctx.key_hash = identity.key_id
        # static UI files are free
        if not identity.authenticated and not (access is Access.UI and method in ("GET", "HEAD")):
            if not await self.anonymous_allowed(scope, send):
                return
        if access is Access.DOCS and not self.public_docs and identity.role != "master":
            problem = None if identity.authenticated else rejection(identity, path, self.allow_query_key)
            await self.refuse(
                send, path, problem, f"{path} needs the admin (master) key, or PUBLIC_DOCS=true on the gateway."
            )
            return
        if access is Access.API:
            problem = rejection(identity, path, self.allow_query_key)  # 401; 403 for a client key off its routes
            if problem is not None:
                await self.refuse(send, path, problem)
                return
            if method in ("POST", "PUT", "PATCH") and is_inference(path):
                content_type = dict(scope["headers"]).get(b"content-type", b"").decode("latin-1").lower()
                if content_type and "json" not in content_type:
                    await send_error(send, 415, unsupported_media(method, path, content_type), path=path)
                    return
        await self.app(scope, receive, send)

    async def anonymous_allowed(self, scope, send) -> bool:
        """Count a request without a valid key against its address; answer 429 when over."""
        address = (scope.get("client") or ("unknown",))[0]  # uvicorn's, after TRUSTED_PROXIES
        verdict = await get_limiter().acquire("anon:" + address, self.anon_limits)
        if verdict.allowed:
            return True
        wait = max(1, int(verdict.retry_after + 0.999))
        body = error_body(429, f"Too many requests without a valid API key from this address: {verdict.limit} per "
                               f"{self.anon_limits.window} s. Retry after {wait} s, or send your API key.", None,
                          "rate_limit_exceeded")
        await send_error(
            send, 429, body, [(k.encode(), v.encode()) for k, v in limit_headers(verdict)], path=scope["path"]
        )
        return False

    @staticmethod
    async def refuse(send, path: str, problem, admin_only: str = "") -> None:
        """`problem` (hooks.auth's 401/403) as an OpenAI-shaped error, else a 403 saying `admin_only`."""
        status, message, code = (
            (int(problem.code), problem.message, problem.type) if problem else (403, admin_only, "admin_key_required")
        )
        await send_error(send, status, error_body(status, message, "api_key", code), path=path)


_REJECTED_FIELD = re.compile(r"Rejected Request: (\S+)")
# OpenAI request fields, none of them on LiteLLM's banned list (tests/security/test_units.py checks it):
# a body made only of these skips LiteLLM's check (~0.2 ms a request), which looks inside metadata,
# extra_body, fallbacks and user_config, none of them here.
OPENAI_FIELDS = frozenset({
    "model", "messages", "prompt", "input", "instructions", "temperature", "top_p", "n", "stream", "stream_options",
    "stop", "max_tokens", "max_completion_tokens", "max_output_tokens", "presence_penalty", "frequency_penalty",
    "logit_bias", "logprobs", "top_logprobs", "user", "tools", "tool_choice", "parallel_tool_calls", "response_format",
    "seed", "reasoning_effort", "reasoning", "encoding_format", "dimensions", "suffix", "echo", "best_of", "modalities",
    "store", "text", "previous_response_id", "include", "truncation", "system", "top_k", "stop_sequences", "thinking",
})


def litellm_banned_fields(body: dict, path: str) -> None:
    """LiteLLM's own list of fields a client may not set (`is_request_body_safe`: endpoints,
    credentials, callback targets, also under metadata), as a 400. LiteLLM would reject them too,
    but in its auth error path, which answers 500 with a traceback when prisma is not installed."""
    if body.keys() <= OPENAI_FIELDS:
        return
    from litellm.proxy import proxy_server
    from litellm.proxy.auth.auth_utils import is_request_body_safe

    try:
        is_request_body_safe(body, proxy_server.general_settings or {}, proxy_server.llm_router,
                             str(body.get("model") or ""), route=path)
    except ValueError as exc:
        match = _REJECTED_FIELD.search(str(exc))
        field = match.group(1) if match else None
        raise RequestRejected(400, f"{repr(field) if field else 'A field'} cannot be set by clients of this gateway "
                                   "(endpoints, credentials and logging targets come from its config.yaml); remove it "
                                   "from the request.", field, "unsupported_parameter") from None


def trust_proxies(settings) -> None:
    """Tell LiteLLM which peers are proxies (its admin UI login throttle counts per real client).
    `use_x_forwarded_for` stays off: LiteLLM would then trust any client's X-Forwarded-For."""
    from litellm.proxy import proxy_server

    if proxy_server.general_settings is not None:
        proxy_server.general_settings["trusted_proxy_ranges"] = list(settings.trusted_proxies)
