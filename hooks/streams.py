"""LiteLLM callback that keeps a broken stream from looking complete (config.yaml: `hooks.streams.instance`).

LiteLLM 1.108.7 skips stream lines it cannot parse (malformed NDJSON from Ollama, a broken SSE
line) and, when the upstream then closes cleanly, ends the stream with a `finish_reason: "stop"`
of its own: the client sees a complete, possibly empty, answer. The provider's real end (Ollama's
`done: true`, DeepSeek's finish_reason) is kept in the stream wrapper's `chunks`, the synthetic one
is not. When the final chunk arrives and no chunk there carries a finish_reason, this hook raises
`StreamIncomplete` instead of passing it on; the proxy turns that into an error event, which
proxy_config.errors words for the client.

How it fails: open. A stream it cannot inspect (not a LiteLLM stream wrapper, or one that fell
back to another deployment mid-way, whose chunks live elsewhere) passes through unchecked.
"""

from __future__ import annotations

import logging

from litellm.integrations.custom_logger import CustomLogger

log = logging.getLogger("gateway.streams")


class StreamIncomplete(Exception):
    status_code = 502

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def finish_reason(chunk: object) -> str | None:
    choices = getattr(chunk, "choices", None)
    return getattr(choices[0], "finish_reason", None) if choices else None


def upstream_finished(stream: object) -> bool:
    """Did the provider itself end this stream? True when that cannot be told."""
    try:
        if getattr(stream, "fallback_headers_adopted", False):
            return True
        if getattr(stream, "received_finish_reason", None) or getattr(stream, "intermittent_finish_reason", None):
            return True
        chunks = getattr(stream, "chunks", None)
        if not isinstance(chunks, list):
            return True
        return any(finish_reason(chunk) for chunk in chunks)
    except Exception:  # fail open
        log.exception("stream check failed")
        return True


class StreamGuard(CustomLogger):
    async def async_post_call_streaming_iterator_hook(self, user_api_key_dict, response, request_data):
        async for chunk in response:
            if finish_reason(chunk) and not upstream_finished(response):
                model = request_data.get("model") if isinstance(request_data, dict) else None
                log.warning("stream from %s ended without the backend's end marker", model)
                raise StreamIncomplete(f"The backend ({model}) ended its stream without finishing it "
                                       "(malformed or missing final data); retry the request.")
            yield chunk


instance = StreamGuard()
