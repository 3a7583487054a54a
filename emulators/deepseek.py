"""DeepSeek API emulator (OpenAI-compatible wire format of api.deepseek.com).

Owns the DeepSeek-shaped endpoints: `POST /chat/completions` and
`/v1/chat/completions` (JSON or SSE), `GET /models` and `/v1/models`, the
app factory and the CLI.  What they answer (checks, error bodies
`{"error": {"message", "type", "param", "code"}}`, generation) lives in
`emulators.deepseek_answers`; the Anthropic-format endpoint
`/anthropic/v1/messages` in `emulators.deepseek_anthropic`.  Faults, stats,
`/_emulator/config`, token rules and the server runner come from
`emulators._common`.

Behaviour and sources (DeepSeek API docs, api-docs.deepseek.com):
- "Create Chat Completion": `deepseek-reasoner` answers with
  `reasoning_content` (`delta.reasoning_content` when streaming); `tools`
  give `message.tool_calls` ([{"id", "type": "function", "function": {"name",
  "arguments": "<JSON string>"}}], finish_reason "tool_calls"), arguments
  generated from the first tool's parameter schema, when the last message is
  the user's; `n` gives n choices.
- "JSON Output": only `response_format: {"type": "json_object"}` exists, and
  the system or user prompt must contain the word "json", else 400 "Prompt
  must contain the word 'json' in some form to use 'response_format' of type
  'json_object'." (wording from users' reports, e.g. vercel/ai#7913); the
  content is then a JSON object: an instance of the first JSON schema written
  in the prompt (system message first), as a model told the schema answers,
  or {"reply": ...} without one (config `follow_schema: false` ignores it).  `{"type": "json_schema"}` is 400 "This
  response_format type is unavailable now" (llm-exe#662, bytedance/deer-flow
  #545); older releases answered 422 "Failed to deserialize the JSON body into
  the target type: response_format: response_format.type `json_schema` is
  unavailable now" (browser-use#215) -> config `json_schema_status: 422`.
- `max_tokens` outside the model's range is 400 "Invalid max_tokens value,
  the valid range of max_tokens is [1, N]": N = 8192 for deepseek-chat
  (DeepSeek-V3#69, openclaude#35), 65536 for deepseek-reasoner (aider#4125).
- "Rate Limit": while a request waits for capacity the connection stays open
  and gets keep-alives, "empty lines" for a non-stream request and SSE
  `: keep-alive` comments for a stream, for up to 10 minutes.  Fault mode
  `busy_keepalive` (`seconds`, 0 = until the client goes; `interval`,
  default 1 s) sends the status and headers at once, then keep-alives, then
  the answer; `keepalive` is the older mode (`delay` seconds, 0.5 s apart).
- "Error Codes": 400 format, 401 auth, 402 balance, 422 parameters, 429 rate
  limit, 500 server error, 503 overloaded (fault modes http_*).

Run: python -m emulators.deepseek --port 8001 [--api-key KEY] [--fault MODE]

How it fails: every bad request gets DeepSeek's status and error body; an
emulator bug surfaces as a 500 from Starlette, never a hang.
"""

from __future__ import annotations

import sys
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from emulators._common import (
    EmulatorState, apply_config, build_parser, emulator_app, fault_from_args, read_json, run_cli,
)
from emulators._responses import early_fault, nonstream_response, run_stream
from emulators.deepseek_answers import (
    DEEPSEEK_FAULTS, MAX_TOKENS, MODELS, DeepSeekConfig, auth_message, completion_body, error,
    error_body, generate, http_faults, presented_key, stream_plan, validate,
)
from emulators.deepseek_anthropic import messages

__all__ = ["DEEPSEEK_FAULTS", "MAX_TOKENS", "MODELS", "DeepSeekConfig", "create_app",
           "error_body", "main"]


class DeepSeekState(EmulatorState):
    def __init__(self, api_key: str | None, models: tuple[str, ...],
                 config: DeepSeekConfig | None = None, **kwargs: Any):
        super().__init__(DEEPSEEK_FAULTS, config=config or DeepSeekConfig(), **kwargs)
        self.api_key, self.models = api_key, models



def check_auth(request: Request) -> JSONResponse | None:
    state: DeepSeekState = request.app.state.emulator
    key = presented_key(request)
    if state.api_key is not None and key != state.api_key:
        return error(401, auth_message(key), "authentication_error")
    return None



async def chat_completions(request: Request) -> Response:
    state: DeepSeekState = request.app.state.emulator
    denied = check_auth(request)
    if denied:
        return denied
    body, err = await read_json(request)
    invalid = validate(body, err, state.models, state.config)
    if isinstance(body, dict) and isinstance(body.get("model"), str):
        state.stats.record_chat(body["model"], body)
    if invalid:
        return invalid
    fault = state.faults.take(body["model"])
    early = await early_fault(request, fault, http_faults(presented_key(request)))
    if early is not None:
        return early
    result = generate(body, state.config.follow_schema, state.config.words())
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
               fault: dict | None = None, chunk_delay: float = 0.0,
               config: DeepSeekConfig | dict | None = None) -> Starlette:
    """A DeepSeek emulator app; with `api_key` set, requests need that bearer key."""
    if isinstance(config, dict):
        config = apply_config(DeepSeekConfig(), config)
    state = DeepSeekState(api_key, tuple(models), config=config, fault=fault,
                          chunk_delay=chunk_delay)
    routes = [
        Route("/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/models", list_models, methods=["GET"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/anthropic/v1/messages", messages, methods=["POST"]),
    ]
    return emulator_app(routes, state)


def main(argv: list[str] | None = None) -> None:
    parser = build_parser("emulators.deepseek", "DeepSeek API emulator", 8001)
    parser.add_argument("--api-key", default=None, help="require this bearer key")
    parser.add_argument("--json-schema-status", type=int, default=400,
                        help="/_emulator/config json_schema_status: 400 (now) or 422 (older)")
    parser.add_argument("--ignore-schema", action="store_true",
                        help="/_emulator/config follow_schema false: json_object ignores a "
                             "schema in the prompt")
    parser.add_argument("--max-n", type=int, default=1,
                        help="/_emulator/config max_n: the largest n (DeepSeek: 1)")
    parser.add_argument("--reply-tokens", type=int, default=None,
                        help="/_emulator/config reply_tokens: tokens in a plain answer (default 11)")
    args = parser.parse_args(argv)
    try:
        app = create_app(args.api_key, fault=fault_from_args(args), chunk_delay=args.delay,
                         config={"json_schema_status": args.json_schema_status,
                                 "follow_schema": not args.ignore_schema, "max_n": args.max_n,
                                 "reply_tokens": args.reply_tokens})
    except ValueError as exc:
        parser.error(str(exc))
    run_cli(app, args.host, args.port)


if __name__ == "__main__":
    main(sys.argv[1:])
