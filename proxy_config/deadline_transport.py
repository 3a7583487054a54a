"""The LiteLLM 1.108.7 coupling of the progress deadlines (proxy_config.deadlines).

LiteLLM sends every Ollama (`ollama_chat`) and DeepSeek (`deepseek`) chat request through
`base_llm_http_handler` and an `httpx.AsyncClient` whose transport is
`litellm.llms.custom_httpx.aiohttp_transport.LiteLLMAiohttpTransport` (AsyncHTTPHandler
.create_async_transport, the default unless LITELLM_HTTP2 or DISABLE_AIOHTTP_TRANSPORT is set).
`install(settings)` rebinds that class's `handle_async_request` so requests to the configured
OLLAMA_URL and DEEPSEEK_URL go through `deadlines.send_with_deadlines`; every other request is
sent as before. Patching the class, not wrapping instances, keeps LiteLLM's `isinstance` checks
on its transports (session clean-up) true. The deadlines' `httpx.ReadTimeout` becomes
`litellm.Timeout` in `AsyncHTTPHandler.post` (before the response is returned) or in the stream
wrapper (mid-stream); tests/proxy_config/test_deadline_transport.py checks both against the
pinned version.

How it fails: like the shims in proxy_config.tuning, it checks its target and logs one line per
worker: INFO with the deadlines when applied, a WARNING when skipped. When the class or method is
missing, LiteLLM is told to use another transport, or installing raises, the deadlines are off
and LiteLLM's idle timeouts still apply (fail open). Installing twice only replaces the deadline
settings.
"""

from __future__ import annotations

import logging

log = logging.getLogger("gateway.tuning")

_tiers: list = []  # the deadlines of this process, replaced by every install()


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

    from proxy_config.deadlines import send_with_deadlines, tiers_from_settings

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
        return await send_with_deadlines(lambda sent: original(self, sent), request, tuple(_tiers))

    handle_async_request._gateway_tuned = True  # type: ignore[attr-defined]
    LiteLLMAiohttpTransport.handle_async_request = handle_async_request
    return True
