"""DeepSeek's Anthropic-compatible endpoint: `POST /anthropic/v1/messages`.

Owns the Anthropic Messages wire format on top of the DeepSeek emulator's
deterministic answers (emulators.deepseek `generate`).

Behaviour and sources (DeepSeek API docs, "Anthropic API",
api-docs.deepseek.com/guides/anthropic_api; the wire format is Anthropic's
Messages API):
- base URL `<host>/anthropic`; the key comes in `x-api-key` (a bearer
  `Authorization` is accepted too); `anthropic-version`/`anthropic-beta` are
  ignored.
- `model`: a DeepSeek model name; any other name (a `claude-*` name
  included) is mapped to deepseek-chat ("When you pass an unsupported model
  name to DeepSeek's Anthropic API, the API backend will automatically map it
  to the deepseek-chat model"; newer releases map to their flash model).
- content blocks of type image, document and search_result are "Not
  Supported"; tool_choice none/auto/any/tool are supported.
- `max_tokens` is required; `system` is a string or text blocks; messages'
  content is a string or blocks (text, tool_use, tool_result).
- answer: {"id": "msg_...", "type": "message", "role": "assistant", "model",
  "content": [thinking?, text | tool_use], "stop_reason": "end_turn" |
  "max_tokens" | "tool_use", "stop_sequence": null, "usage": {"input_tokens",
  "output_tokens"}}; deepseek-reasoner adds a `thinking` block first.
- stream: SSE events message_start, content_block_start /
  content_block_delta (thinking_delta, text_delta, input_json_delta) /
  content_block_stop per block, message_delta (stop_reason, usage),
  message_stop.
- errors: {"type": "error", "error": {"type", "message"}}, the type by status
  (ERROR_TYPES: invalid_request_error, authentication_error, rate_limit_error,
  api_error, overloaded_error, ...).

Faults of `/_emulator/fault` apply here as on the OpenAI endpoint (HTTP
errors, hang, slow, cut, error_mid_stream, keep-alives).

How it fails: every bad request is a 400/401 in Anthropic's error shape; an
emulator bug surfaces as a 500 from Starlette, never a hang.
"""

from __future__ import annotations

import json
import uuid

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from emulators._common import read_json
from emulators._content import message_text, split_chunks
from emulators._responses import StreamPlan, early_fault, nonstream_response, run_stream
from emulators.deepseek_answers import generate, http_faults, presented_key

__all__ = ["messages"]

STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}
# The error `type` by status, as Anthropic's Messages API names them (docs.anthropic.com/en/api/errors),
# which DeepSeek's compatible endpoint follows; LiteLLM maps the type, so a 500 must not say invalid_request_error.
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
               403: "permission_error", 404: "not_found_error", 422: "invalid_request_error",
               429: "rate_limit_error", 500: "api_error", 503: "overloaded_error"}


def anthropic_error(status: int, message: str, type_: str = "invalid_request_error") -> dict:
    return {"type": "error", "error": {"type": type_, "message": message}}


def reply(status: int, message: str, type_: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse(anthropic_error(status, message, type_), status_code=status)


def to_openai(body: dict, model: str) -> dict:
    """The chat-completions body the DeepSeek emulator's `generate` understands."""
    messages: list[dict] = []
    system = body.get("system")
    if system:
        messages.append({"role": "system", "content": message_text(system)})
    for m in body["messages"]:
        content = m.get("content")
        if isinstance(content, list) and any(isinstance(b, dict) and b.get("type") ==
                                             "tool_result" for b in content):
            messages.append({"role": "tool", "content": json.dumps(content)})
        else:
            messages.append({"role": m.get("role"), "content": message_text(content)})
    tools = [{"type": "function", "function": {"name": t.get("name"),
                                               "parameters": t.get("input_schema")}}
             for t in body.get("tools") or [] if isinstance(t, dict)]
    return {"model": model, "messages": messages, "max_tokens": body["max_tokens"],
            **({"tools": tools} if tools else {})}


def blocks_of(result: dict) -> list[dict]:
    blocks: list[dict] = []
    if result["reasoning"]:
        blocks.append({"type": "thinking", "thinking": result["reasoning"], "signature": ""})
    for call in result["tool_calls"]:
        blocks.append({"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:24]}",
                       "name": call["function"]["name"],
                       "input": json.loads(call["function"]["arguments"])})
    if not result["tool_calls"]:
        blocks.append({"type": "text", "text": result["content"]})
    return blocks


def message_body(result: dict, blocks: list[dict]) -> dict:
    return {"id": f"msg_{result['id'][9:]}", "type": "message", "role": "assistant",
            "model": result["model"], "content": blocks,
            "stop_reason": STOP_REASONS[result["finish_reason"]], "stop_sequence": None,
            "usage": {"input_tokens": result["usage"]["prompt_tokens"],
                      "output_tokens": result["usage"]["completion_tokens"]}}


def event(name: str, data: dict) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


def stream_plan(result: dict, blocks: list[dict]) -> StreamPlan:
    head = message_body(result, [])
    head["stop_reason"], head["usage"]["output_tokens"] = None, 0
    chunks = [event("message_start", {"type": "message_start", "message": head})]
    for index, block in enumerate(blocks):
        kind = block["type"]
        start = {**block, **({"text": ""} if kind == "text" else {"thinking": ""}
                             if kind == "thinking" else {"input": {}})}
        chunks.append(event("content_block_start", {"type": "content_block_start",
                                                    "index": index, "content_block": start}))
        if kind == "tool_use":
            deltas = [{"type": "input_json_delta", "partial_json": json.dumps(block["input"])}]
        else:
            field = "text" if kind == "text" else "thinking"
            deltas = [{"type": f"{field}_delta", field: piece}
                      for piece in _pieces(block[field])]
        chunks += [event("content_block_delta", {"type": "content_block_delta", "index": index,
                                                 "delta": d}) for d in deltas]
        chunks.append(event("content_block_stop", {"type": "content_block_stop", "index": index}))
    tail = [event("message_delta", {"type": "message_delta",
                                    "delta": {"stop_reason": STOP_REASONS[result["finish_reason"]],
                                              "stop_sequence": None},
                                    "usage": {"output_tokens":
                                              result["usage"]["completion_tokens"]}}),
            event("message_stop", {"type": "message_stop"})]
    return StreamPlan(chunks=chunks, tail=tail,
                      error=event("error", anthropic_error(500, "Internal Server Error",
                                                           "api_error")),
                      malformed=b'event: message_start\ndata: {"type": "mess\n\n',
                      keepalive=b": keep-alive\n\n")


def _pieces(text: str) -> list[str]:
    return split_chunks(text) or [""]


async def messages(request: Request) -> Response:
    state = request.app.state.emulator
    key = request.headers.get("x-api-key") or presented_key(request)
    if state.api_key is not None and key != state.api_key:
        return reply(401, "invalid x-api-key", "authentication_error")
    body, err = await read_json(request)
    if err or not isinstance(body, dict):
        return reply(400, "Failed to parse the request body as JSON")
    model = body.get("model")
    if model not in state.models:  # DeepSeek maps an unsupported name instead of refusing it
        model = "deepseek-chat"
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        return reply(400, "max_tokens: Field required and must be a positive integer")
    if not isinstance(body.get("messages"), list) or not body["messages"] or not all(
            isinstance(m, dict) and m.get("role") in ("user", "assistant")
            for m in body["messages"]):
        return reply(400, "messages: a non-empty list of user/assistant messages is required")
    state.stats.record_chat(model, body)
    fault = state.faults.take(model)
    errors = {mode: (status, anthropic_error(status, payload["error"]["message"], ERROR_TYPES.get(status, "api_error")))
              for mode, (status, payload) in http_faults(key).items()}
    early = await early_fault(request, fault, errors)
    if early is not None:
        return early
    result = generate(to_openai(body, model), state.config.follow_schema, state.config.words())
    blocks = blocks_of(result)
    if body.get("stream"):
        return StreamingResponse(run_stream(request, stream_plan(result, blocks), fault,
                                            state.chunk_delay),
                                 media_type="text/event-stream",
                                 headers={"cache-control": "no-cache"})
    return await nonstream_response(request, fault, message_body(result, blocks),
                                    error=errors["http_500"],
                                    malformed=b'{"id": "msg_", "content": [')
