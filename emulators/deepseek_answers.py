"""What the DeepSeek emulator answers: validation, generation, wire bodies.

Owns DeepSeek's request checks (`validate`: 400/422 with DeepSeek's
wording, see emulators.deepseek for the sources), the deterministic answer
(`generate`: content, reasoning, tool calls, usage), the chat-completion body
and the SSE stream plan, the error bodies and the key check.  Shared by the
OpenAI-format endpoint (emulators.deepseek) and the Anthropic-format one
(emulators.deepseek_anthropic).

How it fails: `validate` returns the error response a bad request gets;
`generate` assumes a validated body and never raises for one.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from emulators._common import (
    COMMON_FAULTS, DEFAULT_WORDS, REASONING_TEXT, count_prompt_tokens, count_words, make_reply, message_text,
    split_chunks,
)
from emulators._content import instance_of
from emulators._responses import StreamPlan

__all__ = ["DEEPSEEK_FAULTS", "MAX_TOKENS", "MODELS", "DeepSeekConfig", "auth_message",
           "completion_body", "error", "error_body", "generate", "http_faults",
           "logprobs_of", "max_tokens_of", "presented_key", "stream_plan", "validate"]

MODELS = ("deepseek-chat", "deepseek-reasoner")
MAX_TOKENS = {"deepseek-chat": 8192, "deepseek-reasoner": 65536}
DEEPSEEK_FAULTS = COMMON_FAULTS | {"http_401", "http_402", "http_429", "keepalive",
                                   "busy_keepalive"}
FINGERPRINT = "fp_emulator_prod0820_fp8_kvcache"
JSON_WORD = ("Prompt must contain the word 'json' in some form to use 'response_format' "
             "of type 'json_object'.")
DESERIALIZE = "Failed to deserialize the JSON body into the target type: "


@dataclass(frozen=True)
class DeepSeekConfig:
    json_schema_status: int = 400      # 422: releases before 2025 rejected json_schema so
    follow_schema: bool = True         # json_object: answer an instance of a schema in the prompt
    max_n: int = 1                     # DeepSeek serves one choice; raise it to get n choices
    reply_tokens: int | None = None    # words in a plain answer; None = 3 + DEFAULT_WORDS

    def words(self) -> int:
        return DEFAULT_WORDS if self.reply_tokens is None else self.reply_tokens - 3

    def validate(self) -> None:
        if self.reply_tokens is not None and self.reply_tokens < 3:
            raise ValueError("reply_tokens must be >= 3 (\"Hello from MODEL.\") or null")
        if self.json_schema_status not in (400, 422):
            raise ValueError("json_schema_status must be 400 or 422")
        if not 1 <= self.max_n <= 16:
            raise ValueError("max_n must be 1..16")


def error_body(message: str, type_: str, code: str = "invalid_request_error") -> dict:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


def error(status: int, message: str, type_: str = "invalid_request_error",
          code: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse(error_body(message, type_, code), status_code=status)


def auth_message(key: str) -> str:
    return f"Authentication Fails, Your api key: ****{key[-4:]} is invalid"


def http_faults(key: str) -> dict[str, tuple[int, dict]]:
    return {
        "http_401": (401, error_body(auth_message(key), "authentication_error")),
        "http_402": (402, error_body("Insufficient Balance", "unknown_error")),
        "http_429": (429, error_body("Rate Limit Reached", "rate_limit_error",
                                     "rate_limit_exceeded")),
        "http_500": (500, error_body("Internal Server Error", "server_error",
                                     "internal_server_error")),
        "http_503": (503, error_body("Server overloaded, please try again later.",
                                     "service_unavailable_error", "server_overloaded")),
    }


def presented_key(request: Request) -> str:
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    return key.strip() if scheme.lower() == "bearer" else ""


def max_tokens_of(body: dict) -> Any:
    value = body.get("max_completion_tokens")
    return body.get("max_tokens") if value is None else value


def validate(body: Any, err: str | None, models: tuple[str, ...],
             config: DeepSeekConfig = DeepSeekConfig()) -> JSONResponse | None:
    """400 for bad JSON / unknown model / out-of-range values, 422 for bad types."""
    if err:
        return error(400, "Failed to parse the request body as JSON: expected value "
                          "at line 1 column 1")
    if not isinstance(body, dict):
        return error(422, "Failed to deserialize the JSON body into the target type: "
                          "invalid type, expected struct ChatCompletionRequest")
    for field in ("model", "messages"):
        if field not in body:
            return error(422, "Failed to deserialize the JSON body into the target type: "
                              f"missing field `{field}`")
    messages = body["messages"]
    if not isinstance(messages, list) or not messages or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages):
        return error(422, "Failed to deserialize the JSON body into the target type: "
                          "messages: invalid messages")
    if body["model"] not in models:
        return error(400, "Model Not Exist")
    temperature, max_tokens = body.get("temperature"), max_tokens_of(body)
    if temperature is not None and not (isinstance(temperature, (int, float))
                                        and 0 <= temperature <= 2):
        return error(422, "Invalid temperature value, the valid range of temperature is [0, 2]")
    if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool)):
        return error(422, DESERIALIZE + "max_tokens: invalid type, expected u32")
    limit = MAX_TOKENS.get(body["model"], 8192)
    if max_tokens is not None and not 1 <= max_tokens <= limit:
        return error(400, "Invalid max_tokens value, the valid range of max_tokens is "
                          f"[1, {limit}]")
    if not isinstance(body.get("stream", False), bool):
        return error(422, DESERIALIZE + "stream: invalid type, expected a boolean")
    n = body.get("n", 1)
    if not (isinstance(n, int) and not isinstance(n, bool)):
        return error(422, DESERIALIZE + "n: invalid type, expected u32")
    if not 1 <= n <= config.max_n:
        # DeepSeek answers one choice only (explodinggradients/ragas#1072, deepseek-ai/DeepSeek-V2#55)
        return error(400, "Invalid n value (currently only n = 1 is supported)" if config.max_n == 1
                     else f"Invalid n value, the valid range of n is [1, {config.max_n}]")
    return response_format_error(body, config)


def response_format_error(body: dict, config: DeepSeekConfig) -> JSONResponse | None:
    """"JSON Output": json_object needs the word json; json_schema is unavailable."""
    fmt = body.get("response_format")
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if fmt is None or kind == "text":
        return None
    if kind == "json_schema":
        if config.json_schema_status == 422:
            return error(422, DESERIALIZE + "response_format: response_format.type "
                                            "`json_schema` is unavailable now")
        return error(400, "This response_format type is unavailable now")
    if kind != "json_object":
        return error(422, DESERIALIZE + f"response_format.type: unknown variant `{kind}`, "
                                        "expected `text` or `json_object`")
    if not any("json" in message_text(m.get("content")).lower() for m in body["messages"]):
        return error(400, JSON_WORD)
    return None


def tool_calls_for(tools: list) -> list[dict]:
    tool = tools[0] if isinstance(tools[0], dict) else {}
    function = tool.get("function") if isinstance(tool.get("function"), dict) else {}
    arguments = instance_of(function.get("parameters") or {"type": "object"})
    return [{"index": 0, "id": f"call_0_{uuid.uuid4()}", "type": "function",
             "function": {"name": function.get("name", "tool"),
                          "arguments": json.dumps(arguments)}}]


SCHEMA_KEYS = ("properties", "items", "anyOf", "oneOf", "allOf", "$ref", "enum")


def schema_in_prompt(messages: list[dict]) -> dict | None:
    """The first JSON schema written in the messages (system first), or None.

    A JSON object counts as a schema when it has a schema keyword (`properties`,
    `items`, `anyOf`, ...) or `"type": "object" | "array"`.
    """
    decoder = json.JSONDecoder()
    ordered = sorted(messages, key=lambda m: m.get("role") != "system")
    for text in (message_text(m.get("content")) for m in ordered):
        start = text.find("{")
        while start != -1:
            try:
                value, _ = decoder.raw_decode(text, start)
            except ValueError:
                value = None
            if isinstance(value, dict) and (any(k in value for k in SCHEMA_KEYS)
                                            or value.get("type") in ("object", "array")):
                return value
            start = text.find("{", start + 1)
    return None


def json_content(model: str, messages: list[dict], follow_schema: bool) -> str:
    """JSON Output: a model told a schema in its prompt answers an instance of it."""
    schema = schema_in_prompt(messages) if follow_schema else None
    return json.dumps(instance_of(schema) if schema else {"reply": f"Hello from {model}."})


def generate(body: dict, follow_schema: bool = True, words: int = DEFAULT_WORDS) -> dict:
    """Deterministic answer: content, reasoning, tool calls, finish_reason and usage."""
    model, messages, tools = body["model"], body["messages"], body.get("tools")
    fmt = body.get("response_format")
    content, finish = make_reply(model, max_tokens_of(body), words)
    tool_calls: list[dict] = []
    if tools and isinstance(tools, list) and messages[-1].get("role") == "user":
        tool_calls, content, finish = tool_calls_for(tools), "", "tool_calls"
    elif isinstance(fmt, dict) and fmt.get("type") == "json_object":
        content = json_content(model, messages, follow_schema)
    reasoning = REASONING_TEXT if model == "deepseek-reasoner" else ""
    prompt, reasoning_tokens = count_prompt_tokens(messages, tools), count_words(reasoning)
    completion = reasoning_tokens + count_words(content)
    completion += count_words(json.dumps(tool_calls)) if tool_calls else 0
    usage = {"prompt_tokens": prompt, "completion_tokens": completion,
             "total_tokens": prompt + completion,
             "prompt_tokens_details": {"cached_tokens": 0},
             "prompt_cache_hit_tokens": 0, "prompt_cache_miss_tokens": prompt,
             "completion_tokens_details": {"reasoning_tokens": reasoning_tokens}}
    return {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()),
            "model": model, "content": content, "reasoning": reasoning,
            "tool_calls": tool_calls, "finish_reason": finish, "usage": usage,
            "n": body.get("n", 1),
            "top_logprobs": body.get("top_logprobs") or 0 if body.get("logprobs") else None}


def logprobs_of(result: dict, text: str) -> dict | None:
    """OpenAI-shaped `logprobs` for `text` (one entry per word, log-probability 0)."""
    top = result["top_logprobs"]
    if top is None or not text:
        return None

    def entry(token: str, logprob: float) -> dict:
        return {"token": token, "logprob": logprob, "bytes": list(token.encode())}

    return {"content": [{**entry(w, 0.0), "top_logprobs": [entry(w if k == 0 else f"{w}{k}",
                                                                   -float(k))
                                                             for k in range(top)]}
                        for w in split_chunks(text)]}


def completion_body(result: dict) -> dict:
    message: dict[str, Any] = {"role": "assistant", "content": result["content"]}
    if result["reasoning"]:
        message["reasoning_content"] = result["reasoning"]
    if result["tool_calls"]:
        message["tool_calls"] = [{k: v for k, v in call.items() if k != "index"}
                                 for call in result["tool_calls"]]
    return {"id": result["id"], "object": "chat.completion", "created": result["created"],
            "model": result["model"],
            "choices": [{"index": i, "message": message,
                         "logprobs": logprobs_of(result, result["content"]),
                         "finish_reason": result["finish_reason"]}
                        for i in range(result["n"])],
            "usage": result["usage"], "system_fingerprint": FINGERPRINT}


def sse(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def stream_plan(result: dict, include_usage: bool) -> StreamPlan:
    def chunk(delta: dict | None, finish: str | None = None, **extra: Any) -> bytes:
        choices = [] if delta is None else [
            {"index": i, "delta": delta, "logprobs": logprobs_of(result, delta.get("content")),
             "finish_reason": finish} for i in range(result["n"])]
        return sse({"id": result["id"], "object": "chat.completion.chunk",
                    "created": result["created"], "model": result["model"],
                    "system_fingerprint": FINGERPRINT, "choices": choices, **extra})

    reasoner = bool(result["reasoning"])
    deltas = [{"content": None, "reasoning_content": w} for w in split_chunks(result["reasoning"])]
    deltas += [{"content": w, **({"reasoning_content": None} if reasoner else {})}
               for w in split_chunks(result["content"])]
    if result["tool_calls"]:
        deltas.append({"content": None, "tool_calls": result["tool_calls"]})
    if deltas:
        deltas[0] = {"role": "assistant", **deltas[0]}
    tail = [chunk({"content": ""}, result["finish_reason"])]
    if include_usage:
        tail.append(chunk(None, usage=result["usage"]))
    tail.append(b"data: [DONE]\n\n")
    return StreamPlan(
        chunks=[chunk(d) for d in deltas], tail=tail,
        error=sse(error_body("Internal Server Error", "server_error", "internal_server_error")),
        malformed=b'data: {"id": "' + result["id"].encode() + b'", "choices": [\n\n',
        keepalive=b": keep-alive\n\n")
