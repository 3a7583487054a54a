"""DeepSeek API emulator (OpenAI-compatible wire format of api.deepseek.com).

Owns the DeepSeek-shaped endpoints: `POST /chat/completions` and
`/v1/chat/completions` (JSON or SSE), `GET /models` and `/v1/models`, the
bearer-key check and DeepSeek's error bodies
`{"error": {"message", "type", "param", "code"}}`.  `deepseek-reasoner`
answers with `reasoning_content`.  Faults, stats, token rules and the
server runner come from `emulators._common`.

Run: python -m emulators.deepseek --port 8001 [--api-key KEY] [--fault MODE]
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from emulators._common import (
    COMMON_FAULTS, REASONING_TEXT, EmulatorState, StreamPlan,
    build_parser, count_prompt_tokens, emulator_app, count_words, early_fault,
    fault_from_args, make_reply, nonstream_response, read_json, run_cli,
    run_stream, split_chunks,
)

__all__ = ["DEEPSEEK_FAULTS", "MODELS", "create_app", "error_body", "main"]

MODELS = ("deepseek-chat", "deepseek-reasoner")
DEEPSEEK_FAULTS = COMMON_FAULTS | {"http_401", "http_402", "http_429", "keepalive"}
FINGERPRINT = "fp_emulator_prod0820_fp8_kvcache"


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


class DeepSeekState(EmulatorState):
    def __init__(self, api_key: str | None, models: tuple[str, ...], **kwargs: Any):
        super().__init__(DEEPSEEK_FAULTS, **kwargs)
        self.api_key, self.models = api_key, models


def presented_key(request: Request) -> str:
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    return key.strip() if scheme.lower() == "bearer" else ""


def check_auth(request: Request) -> JSONResponse | None:
    state: DeepSeekState = request.app.state.emulator
    key = presented_key(request)
    if state.api_key is not None and key != state.api_key:
        return error(401, auth_message(key), "authentication_error")
    return None


def max_tokens_of(body: dict) -> Any:
    value = body.get("max_completion_tokens")
    return body.get("max_tokens") if value is None else value


def validate(body: Any, err: str | None, models: tuple[str, ...]) -> JSONResponse | None:
    """400 for bad JSON / unknown model, 422 for bad parameters."""
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
    if max_tokens is not None and not (isinstance(max_tokens, int) and 1 <= max_tokens <= 65536):
        return error(422, "Invalid max_tokens value, the valid range of max_tokens is [1, 65536]")
    if not isinstance(body.get("stream", False), bool):
        return error(422, "Failed to deserialize the JSON body into the target type: "
                          "stream: invalid type, expected a boolean")
    return None


def generate(body: dict) -> dict:
    """Deterministic answer: content, reasoning, finish_reason and usage."""
    model = body["model"]
    content, finish = make_reply(model, max_tokens_of(body))
    reasoning = REASONING_TEXT if model == "deepseek-reasoner" else ""
    prompt, reasoning_tokens = count_prompt_tokens(body["messages"]), count_words(reasoning)
    completion = reasoning_tokens + count_words(content)
    usage = {"prompt_tokens": prompt, "completion_tokens": completion,
             "total_tokens": prompt + completion,
             "prompt_tokens_details": {"cached_tokens": 0},
             "prompt_cache_hit_tokens": 0, "prompt_cache_miss_tokens": prompt,
             "completion_tokens_details": {"reasoning_tokens": reasoning_tokens}}
    return {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()),
            "model": model, "content": content, "reasoning": reasoning,
            "finish_reason": finish, "usage": usage}


def completion_body(result: dict) -> dict:
    message = {"role": "assistant", "content": result["content"]}
    if result["reasoning"]:
        message["reasoning_content"] = result["reasoning"]
    return {"id": result["id"], "object": "chat.completion", "created": result["created"],
            "model": result["model"],
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": result["finish_reason"]}],
            "usage": result["usage"], "system_fingerprint": FINGERPRINT}


def sse(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def stream_plan(result: dict, include_usage: bool) -> StreamPlan:
    def chunk(delta: dict | None, finish: str | None = None, **extra: Any) -> bytes:
        choices = [] if delta is None else [
            {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
        return sse({"id": result["id"], "object": "chat.completion.chunk",
                    "created": result["created"], "model": result["model"],
                    "system_fingerprint": FINGERPRINT, "choices": choices, **extra})

    reasoner = bool(result["reasoning"])
    deltas = [{"content": None, "reasoning_content": w} for w in split_chunks(result["reasoning"])]
    deltas += [{"content": w, **({"reasoning_content": None} if reasoner else {})}
               for w in split_chunks(result["content"])]
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


async def chat_completions(request: Request) -> Response:
    state: DeepSeekState = request.app.state.emulator
    denied = check_auth(request)
    if denied:
        return denied
    body, err = await read_json(request)
    invalid = validate(body, err, state.models)
    if isinstance(body, dict) and isinstance(body.get("model"), str):
        state.stats.record_chat(body["model"], body)
    if invalid:
        return invalid
    fault = state.faults.take(body["model"])
    early = await early_fault(request, fault, http_faults(presented_key(request)))
    if early is not None:
        return early
    result = generate(body)
    if body.get("stream", False):
        options = body.get("stream_options") or {}
        plan = stream_plan(result, bool(isinstance(options, dict)
                                        and options.get("include_usage")))
        return StreamingResponse(run_stream(request, plan, fault, state.chunk_delay),
                                 media_type="text/event-stream",
                                 headers={"cache-control": "no-cache"})
    return await nonstream_response(
        request, fault, completion_body(result),
        error=http_faults("")["http_500"],
        malformed=b'{"id": "' + result["id"].encode() + b'", "choices": [')


async def list_models(request: Request) -> Response:
    state: DeepSeekState = request.app.state.emulator
    denied = check_auth(request)
    if denied:
        return denied
    return JSONResponse({"object": "list", "data": [
        {"id": m, "object": "model", "owned_by": "deepseek"} for m in state.models]})


def create_app(api_key: str | None = None, models: tuple[str, ...] = MODELS,
               fault: dict | None = None, chunk_delay: float = 0.0) -> Starlette:
    """A DeepSeek emulator app; with `api_key` set, requests need that bearer key."""
    state = DeepSeekState(api_key, tuple(models), fault=fault, chunk_delay=chunk_delay)
    routes = [
        Route("/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/models", list_models, methods=["GET"]),
        Route("/v1/models", list_models, methods=["GET"]),
    ]
    return emulator_app(routes, state)


def main(argv: list[str] | None = None) -> None:
    parser = build_parser("emulators.deepseek", "DeepSeek API emulator", 8001)
    parser.add_argument("--api-key", default=None, help="require this bearer key")
    args = parser.parse_args(argv)
    try:
        app = create_app(args.api_key, fault=fault_from_args(args), chunk_delay=args.delay)
    except ValueError as exc:
        parser.error(str(exc))
    run_cli(app, args.host, args.port)


if __name__ == "__main__":
    main(sys.argv[1:])
