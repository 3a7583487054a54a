"""The LiteLLM 1.108.7 coupling of the progress deadlines (proxy_config.deadlines).

LiteLLM sends every Ollama (`ollama_chat`) and DeepSeek (`deepseek`) chat request through
`base_llm_http_handler` and an `httpx.AsyncClient` whose transport is
`litellm.llms.custom_httpx.aiohttp_transport.LiteLLMAiohttpTransport` (AsyncHTTPHandler
.create_async_transport, the default unless LITELLM_HTTP2 or DISABLE_AIOHTTP_TRANSPORT is set).
`install(settings)` rebinds that class's `handle_async_request` so requests to the configured
OLLAMA_URL and DEEPSEEK_URL go through `deadlines.send_with_deadlines`; every other request is
sent as before. Patching the class, not wrapping instances, keeps LiteLLM's `isinstance` checks
on its transports (session clean-up) true. A deadline missed before the response is
returned leaves the transport as `DeadlineTimeout` (status 408), which LiteLLM maps to its
`Timeout` with the deadline's own message, so the router falls back; one missed mid-stream stays
an `httpx.ReadTimeout` that LiteLLM's stream wrapper maps to a connection error.
tests/proxy_config/test_deadline_transport.py checks this against the pinned version.

How it fails: like the shims in litellm_compat.tuning, it checks its target and logs one line per
worker: INFO with the deadlines when applied, a WARNING when skipped. When the class or method is
missing, LiteLLM is told to use another transport, or installing raises, the deadlines are off
and LiteLLM's idle timeouts still apply (fail open). Installing twice only replaces the deadline
settings.
"""

from __future__ import annotations

import logging

log = logging.getLogger("gateway.tuning")

_tiers: list = []  # the deadlines of this process, replaced by every install()


class DeadlineTimeout(Exception):
    """A deadline missed before the response: not an httpx timeout, so that `AsyncHTTPHandler.post`
    does not replace the message with its own ("Connection timed out. Timeout passed=600 ..."); its
    408 makes base_llm_http_handler raise the provider's error, which LiteLLM maps to a Timeout."""

    status_code = 408

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def install(settings) -> bool:
    """Route LiteLLM's chat requests to Ollama and DeepSeek through the progress deadlines."""
    try:
        applied = _install(settings)
    except Exception:  # never stop the gateway from starting
        log.warning("tuning: installing the progress deadlines failed; only the idle timeouts apply", exc_info=True)
        return False
    if applied:
        log.info("tuning: progress deadlines %s", ", ".join(
            f"{t.tier} first token {t.first_token:g} s / stall {t.stall:g} s" for t in _tiers))
    return applied


def _install(settings) -> bool:
    from litellm.llms.custom_httpx.aiohttp_transport import LiteLLMAiohttpTransport
    from litellm.llms.custom_httpx.http_handler import AsyncHTTPHandler

    from proxy_config.deadlines import DeadlineMissed, send_with_deadlines, tiers_from_settings

    original = LiteLLMAiohttpTransport.__dict__.get("handle_async_request")
    if not callable(original):
        log.warning("tuning: LiteLLMAiohttpTransport.handle_async_request not found; deadlines skipped")
        return False
    if not AsyncHTTPHandler.should_use_aiohttp_transport():
        log.warning("tuning: LiteLLM uses the httpx transport (LITELLM_HTTP2 or DISABLE_AIOHTTP_TRANSPORT); "
                    "progress deadlines are off, only the idle timeouts apply")
        return False
    _tiers[:] = tiers_from_settings(settings)
    if getattr(original, "_gateway_tuned", False):
        return True

    async def handle_async_request(self, request):
        try:
            return await send_with_deadlines(lambda sent: original(self, sent), request, tuple(_tiers))
        except DeadlineMissed as exc:
            raise DeadlineTimeout(str(exc)) from exc

    handle_async_request._gateway_tuned = True  # type: ignore[attr-defined]
    LiteLLMAiohttpTransport.handle_async_request = handle_async_request
    return True
