"""Cross-origin access, following `settings.cors_origins` (CORS_ORIGINS) only.

LiteLLM's app adds its own CORSMiddleware at import time, allowing every origin (`*`) unless
LITELLM_CORS_ORIGINS is set, and an empty value means `*` there too. The gateway wants the
opposite default (empty = no cross-origin access), so `cors_layer` answers preflights itself
with Starlette's CORSMiddleware and strips LiteLLM's `access-control-*` headers from responses.
A rejected preflight gets an OpenAI-shaped 400 that names CORS_ORIGINS.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse, Response

from gateway.errors import error_body

EXPOSED = ("x-gateway-route", "x-gateway-reason", "x-request-id", "retry-after")


class GatewayCORS(CORSMiddleware):
    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        message = (f"{bytes(response.body).decode()} for origin {request_headers['origin']!r}; "
                   "cross-origin access is limited to the origins listed in CORS_ORIGINS.")
        headers = {k: v for k, v in response.headers.items() if k.lower() not in ("content-length", "content-type")}
        return JSONResponse(error_body(response.status_code, message, None, "cors_rejected"),
                            status_code=response.status_code, headers=headers)


class StripCORSHeaders:
    """Removes the `access-control-*` headers LiteLLM's own CORS middleware added."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def stripped(message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if not k.lower().startswith(b"access-control-")]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, stripped)


def strip_litellm_cors(litellm_app):
    """`litellm_app` in StripCORSHeaders while its allow-all CORSMiddleware is still installed
    (litellm_compat.tuning normally removes it; then there is nothing to strip)."""
    installed = any(getattr(m, "cls", None) is CORSMiddleware for m in getattr(litellm_app, "user_middleware", ()))
    return StripCORSHeaders(litellm_app) if installed else litellm_app


def cors_layer(app, origins: list[str]):
    """`app` with cross-origin access limited to `origins` ([] = none); wrap LiteLLM's app in
    StripCORSHeaders inside it."""
    return GatewayCORS(app, allow_origins=origins, allow_methods=["*"], allow_headers=["*"],
                       allow_credentials=False, expose_headers=EXPOSED)
