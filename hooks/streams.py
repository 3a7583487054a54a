"""LiteLLM callback that keeps a broken stream from looking complete (config.yaml: `hooks.streams.instance`).

LiteLLM 1.108.7 skips stream lines it cannot parse (malformed NDJSON from Ollama, a broken SSE
line) and, when the upstream then closes cleanly, ends the stream with a `finish_reason: "stop"`
of its own: the client sees a complete, possibly empty, answer. The provider's real end (Ollama's
`done: true`, DeepSeek's finish_reason) is kept in the stream wrapper's `chunks`, the synthetic one
is not. When the final chunk arrives and no chunk there carries a finish_reason, this hook raises
`StreamIncomplete` instead of passing it on; the proxy turns that into an error event, which
gateway.errors words for the client. The same happens when a cloud reply to a json_schema
request (sent to DeepSeek as json_object, see custom_router.params) does not match the schema.

How it fails: open. A stream it cannot inspect (not a LiteLLM stream wrapper, or one that fell
back to another deployment mid-way, whose chunks live elsewhere) passes through unchecked.
"""

from __future__ import annotations

import logging

from litellm.integrations.custom_logger import CustomLogger

from hooks import context
from hooks.routing import schema_error, schema_mismatch
from litellm_compat.wording import upstream_finished

log = logging.getLogger("gateway.streams")


class StreamIncomplete(Exception):
    status_code = 502

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def finish_reason(chunk: object) -> str | None:
    choices = getattr(chunk, "choices", None)
    return getattr(choices[0], "finish_reason", None) if choices else None


def delta_text(chunk: object) -> str:
    choices = getattr(chunk, "choices", None)
    return str(getattr(getattr(choices[0], "delta", None), "content", None) or "") if choices else ""


class StreamGuard(CustomLogger):
    async def async_post_call_streaming_iterator_hook(self, user_api_key_dict, response, request_data):
        text: list[str] = []
        model = request_data.get("model") if isinstance(request_data, dict) else None
        async for chunk in response:
            if finish_reason(chunk) and not upstream_finished(response):
                log.warning("stream from %s ended without the backend's end marker", model)
                raise StreamIncomplete(f"The backend ({model}) ended its stream without finishing it "
                                       "(malformed or missing final data); retry the request.")
            schema = getattr(context.current.get(), "reply_schema", None)  # a cloud reply to a translated json_schema
            if schema is not None:
                text.append(delta_text(chunk))
                why = schema_mismatch("".join(text), schema) if finish_reason(chunk) else None
                if why is not None:
                    raise StreamIncomplete(schema_error(str(model), why))
            yield chunk


instance = StreamGuard()
