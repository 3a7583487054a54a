"""Ollama HTTP API emulator (wire format of Ollama 0.12).

Owns the inference endpoints `/api/chat` (NDJSON stream or single JSON) and
`/api/embed`, the app factory and the CLI.  The model-management endpoints
(`/`, `/api/version`, `/api/tags`, `/api/ps`, `/api/show`, `/api/pull`,
`/v1/models`, `POST /_emulator/models`) live in `emulators.ollama_registry`.
Faults, stats and
`/_emulator/config` come from `emulators._common`; the runner slots from
`emulators._runner`; the models from `emulators.ollama_models`; what a chat
generates (and how fast) from `emulators.ollama_generate`.

Behaviour and sources (Ollama, github.com/ollama/ollama, server/routes.go):
- ChatHandler order: body and model checks (400/404), capability checks (400,
  see ollama_models), then the scheduler: a runner slot or the queue
  (emulators._runner; 503 when the queue is full), then load, prompt
  evaluation and generation.  No byte, not even the headers, is sent before
  the first token: gin writes headers with the first write.
- Errors before the first byte are a real HTTP status with `{"error": ...}`
  (streamResponse: `if !c.Writer.Written() { c.JSON(status, ...) }`); after
  the first byte an `{"error": ...}` line ends the stream.  Fault modes:
  `error_status_before_first_token` (status: the fault's `status`, default
  500) is what production sends; `error_before_first_token` keeps the older
  emulator meaning, a 200 whose first line is the error line (the after-the-
  first-byte form), because tests of the gateway's line handling use it.
- EmbedHandler: `input` is a string or a list of strings ("invalid input
  type" otherwise); the answer is {"model", "embeddings", "total_duration",
  "load_duration", "prompt_eval_count"}; vectors are deterministic (a hash of
  the text) and L2-normalised, of the model's embedding length.
- A client that closes its connection cancels its queued or running request;
  the slot is free again at once and `stats.cancelled` counts it.

Run: python -m emulators.ollama --port 11434 [--models a:b,c:d] [--fault MODE]
     [--num-parallel N --max-queue N --tokens-per-second R ...] (see --help)

How it fails: every bad request gets Ollama's status and `{"error": ...}`
body; an emulator bug surfaces as a 500 from Starlette, never a hang.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import struct
import sys
from dataclasses import fields
from typing import Any, AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from emulators._common import (
    COMMON_FAULTS, EmulatorState, apply_config, build_parser, emulator_app, fault_from_args,
    read_json, run_cli,
)
from emulators._content import count_prompt_tokens, count_text_tokens
from emulators._responses import early_fault, nonstream_response, run_stream
from emulators._runner import ClientGone, QueueFull, Slots, until_disconnect
from emulators.ollama_generate import (
    RUNNER_ERROR, THINK_VALUES, OllamaConfig, generate, nonstream_body, options_of, stream_plan,
    timings,
)
from emulators.ollama_models import (
    CATALOGUE, DEFAULT_MODELS, canonical, missing_capabilities, spec_of,
)
from emulators.ollama_registry import (
    VERSION, error, now_iso, openai_models, ps, pull, root, set_models, show, tags, version,
)

__all__ = ["BUSY_ERROR", "CATALOGUE", "DEFAULT_MODELS", "OLLAMA_FAULTS", "VERSION",
           "OllamaConfig", "create_app", "main"]

OLLAMA_FAULTS = COMMON_FAULTS | {"http_404", "error_status_before_first_token"}
BUSY_ERROR = "server busy, please try again.  maximum pending requests exceeded"


class OllamaState(EmulatorState):
    """Emulator state plus the installed and loaded model lists and the runner slots."""

    def __init__(self, models: list[str], config: OllamaConfig | None = None, **kwargs: Any):
        super().__init__(OLLAMA_FAULTS, config=config or OllamaConfig(), **kwargs)
        self.initial_models = [canonical(m) for m in models]
        self.set_models(self.initial_models)
        self.slots = Slots(self.stats, lambda: self.config.num_parallel,
                           lambda: self.config.max_queue)

    def set_models(self, models: list[str]) -> None:
        self.installed = {canonical(m): now_iso() for m in models}
        self.loaded: dict[str, str] = {}
        self.loaded_ctx: dict[str, int] = {}     # the num_ctx each model was loaded with

    def needs_load(self, model: str, num_ctx: int) -> bool:
        """Not loaded, or loaded with another num_ctx: sched.go needsReload compares the
        runner options, num_ctx among them, and reloads the model when they differ."""
        name = canonical(model)
        if name in self.loaded and self.loaded_ctx.get(name) != num_ctx:
            self.stats.reloads += 1
            return True
        return name not in self.loaded

    def mark_loaded(self, model: str, num_ctx: int) -> None:
        self.loaded[canonical(model)] = now_iso(300)
        self.loaded_ctx[canonical(model)] = num_ctx

    def reset(self) -> None:
        super().reset()
        self.set_models(self.initial_models)

    def set_config(self, config: Any) -> None:
        super().set_config(config)
        if hasattr(self, "slots"):
            self.slots.wake()           # more slots now: start queued requests


# ----------------------------------------------------------------- chat
def validate_chat(body: Any, err: str | None) -> JSONResponse | None:
    if err == "empty":
        return error(400, "missing request body")
    if err or not isinstance(body, dict):
        return error(400, "invalid character looking for beginning of value")
    if not isinstance(body.get("model"), str) or not body["model"]:
        return error(400, "model is required")
    messages = body.get("messages")
    if messages is not None and not (isinstance(messages, list)
                                     and all(isinstance(m, dict) for m in messages)):
        return error(400, "json: cannot unmarshal messages into Go struct field")
    think = body.get("think")
    if think is not None and think is not False and think not in THINK_VALUES:
        return error(400, f"invalid think value: {json.dumps(think)} "
                          '(must be "high", "medium", "low", "max", true, or false)')
    return None


def has_images(messages: list[dict]) -> bool:
    return any(m.get("images") or (isinstance(m.get("content"), list) and any(
        isinstance(p, dict) and p.get("type") == "image_url" for p in m["content"]))
        for m in messages)


def capability_error(model: str, body: dict) -> JSONResponse | None:
    """routes.go ChatHandler's 400s for a model that cannot serve the request."""
    think = body.get("think")
    if think in THINK_VALUES and "thinking" not in spec_of(model).capabilities:
        return error(400, f'"{model}" does not support thinking')
    wanted = ["completion"]
    if body.get("tools"):
        wanted.append("tools")
    missing = missing_capabilities(model, wanted)
    if missing and "completion" in missing.rsplit("does not support ", 1)[1].split("\n"):
        return error(400, f'"{model}" does not support chat')
    return error(400, missing) if missing else None


class HeldStream(StreamingResponse):
    """A streaming answer that holds a runner slot until it ends or the client goes."""

    def __init__(self, chunks: AsyncIterator[bytes], state: OllamaState):
        self.state, self.finished = state, False
        super().__init__(self._track(chunks), media_type="application/x-ndjson")

    async def _track(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            yield chunk
        self.finished = True

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            if not self.finished:
                self.state.stats.cancelled += 1
            self.state.slots.release()


async def chat(request: Request) -> Response:
    state: OllamaState = request.app.state.emulator
    body, err = await read_json(request)
    invalid = validate_chat(body, err)
    if invalid:
        return invalid
    model = body["model"]
    state.stats.record_chat(model, body)
    if canonical(model) not in state.installed:
        return error(404, f"model '{model}' not found")
    refused = capability_error(model, body)
    if refused:
        return refused
    if has_images(body.get("messages") or []) and "vision" not in spec_of(model).capabilities:
        state.stats.images_ignored += 1       # the text runners drop them without a word
    fault = state.faults.take(model)
    try:
        await until_disconnect(request, state.slots.acquire())
    except QueueFull:
        return error(503, BUSY_ERROR)
    except ClientGone:
        state.stats.cancelled += 1
        return Response(status_code=499)
    try:
        return await serve_chat(request, state, model, body, fault)
    except ClientGone:
        state.stats.cancelled += 1
        return Response(status_code=499)
    finally:
        if not getattr(request.state, "stream_holds_slot", False):
            state.slots.release()


def runner_refusal(body: dict, config: OllamaConfig) -> JSONResponse | None:
    """What the runner refuses before the first token (a real status, routes.go streamResponse):
    a `format` that is neither "json" nor a schema object (llm/server.go Completion), and with
    `"truncate": false` a prompt over num_ctx (runner.go errorInputTooLong; no silent cut)."""
    fmt = body.get("format")
    if fmt not in (None, "", "json") and not isinstance(fmt, dict):
        return error(500, f"invalid format: {json.dumps(json.dumps(fmt))}; "
                          'expected "json" or a valid JSON Schema object')
    num_ctx = options_of(body).get("num_ctx")
    num_ctx = num_ctx if isinstance(num_ctx, int) and not isinstance(num_ctx, bool) else config.context_length
    if body.get("truncate") is False and count_prompt_tokens(body.get("messages"), body.get("tools")) > num_ctx:
        return error(400, "the input length exceeds the context length")
    return None


async def serve_chat(request: Request, state: OllamaState, model: str, body: dict,
                     fault: Any) -> Response:
    """Generate the answer while holding a slot (the caller releases it)."""
    http_errors = {"http_500": (500, {"error": RUNNER_ERROR}),
                   "http_503": (503, {"error": BUSY_ERROR}),
                   "http_404": (404, {"error": f"model '{model}' not found"})}
    early = await early_fault(request, fault, http_errors, {"error": RUNNER_ERROR})
    if early is not None:
        if fault.mode == "hang":
            raise ClientGone()
        return early
    config: OllamaConfig = state.config
    refused = runner_refusal(body, config)
    if refused:
        return refused
    result = generate(model, body, config)
    times = timings(result, config, cold=state.needs_load(model, result["num_ctx"]))
    await until_disconnect(request, asyncio.sleep(times["load"] + times["prompt"]))
    state.mark_loaded(model, result["num_ctx"])
    if body.get("stream", True) is not False:
        plan = stream_plan(model, result, times)
        response = HeldStream(run_stream(request, plan, fault,
                                         state.chunk_delay + times["token"]), state)
        request.state.stream_holds_slot = True
        return response
    await until_disconnect(request, asyncio.sleep(times["token"] * result["eval_count"]))
    return await nonstream_response(
        request, fault, nonstream_body(model, result, times),
        error=(500, {"error": RUNNER_ERROR}),
        malformed=f'{{"model": "{model}", "message": {{'.encode())


# ---------------------------------------------------------------- embed
def embedding(text: str, size: int) -> list[float]:
    """A deterministic unit vector of `size` floats derived from `text`."""
    raw = b"".join(hashlib.sha256(f"{i}:{text}".encode()).digest()
                   for i in range(math.ceil(size * 4 / 32)))
    values = [v / 2**32 - 0.5 for v in struct.unpack(f"<{size}I", raw[:size * 4])]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [round(v / norm, 6) for v in values]


async def embed(request: Request) -> Response:
    state: OllamaState = request.app.state.emulator
    body, err = await read_json(request)
    if err == "empty":
        return error(400, "missing request body")
    if err or not isinstance(body, dict):
        return error(400, "invalid character looking for beginning of value")
    model, given = body.get("model"), body.get("input")
    if not isinstance(model, str) or not model:
        return error(400, "model is required")
    state.stats.record_chat(model, body)
    if given is not None and not isinstance(given, str) and not (
            isinstance(given, list) and all(isinstance(i, str) for i in given)):
        return error(400, "invalid input type")
    inputs = [given] if isinstance(given, str) and given else list(given or [])
    if canonical(model) not in state.installed:
        return error(404, f"model '{model}' not found")
    if "embedding" not in spec_of(model).capabilities:
        # EmbedHandler asks for no capability; the runner of a generation model refuses
        # (runner/ollamarunner/runner.go, v0.12.6) and EmbedHandler answers 500 with its text.
        return error(500, "this model does not support embeddings")
    fault = state.faults.take(model)  # the HTTP faults fail /api/embed as they fail /api/chat (a crashed runner: 500)
    early = await early_fault(request, fault, {"http_500": (500, {"error": RUNNER_ERROR}),
                                               "http_503": (503, {"error": BUSY_ERROR})})
    if early is not None:
        return early
    size = spec_of(model).embedding_length
    cold = canonical(model) not in state.loaded
    state.loaded[canonical(model)] = now_iso(300)
    load = 1_000_000 if not cold else int(state.config.load_seconds * 1e9) or 1_000_000
    tokens = sum(count_text_tokens(t) for t in inputs)
    return JSONResponse({"model": model, "embeddings": [embedding(t, size) for t in inputs],
                         "total_duration": load + tokens * 500_000, "load_duration": load,
                         "prompt_eval_count": tokens})


def create_app(models: list[str] | tuple[str, ...] = DEFAULT_MODELS, fault: dict | None = None,
               chunk_delay: float = 0.0, config: OllamaConfig | dict | None = None) -> Starlette:
    """An Ollama emulator app; `fault` is an initial /_emulator/fault spec and `config`
    initial /_emulator/config settings (also what /_emulator/reset restores)."""
    if isinstance(config, dict):
        config = apply_config(OllamaConfig(), config)
    state = OllamaState(list(models), config=config, fault=fault, chunk_delay=chunk_delay)
    routes = [
        Route("/", root, methods=["GET", "HEAD"]),
        Route("/api/version", version, methods=["GET"]),
        Route("/api/tags", tags, methods=["GET"]),
        Route("/api/ps", ps, methods=["GET"]),
        Route("/api/show", show, methods=["POST"]),
        Route("/api/chat", chat, methods=["POST"]),
        Route("/api/embed", embed, methods=["POST"]),
        Route("/api/pull", pull, methods=["POST"]),
        Route("/v1/models", openai_models, methods=["GET"]),
        Route("/_emulator/models", set_models, methods=["POST"]),
    ]
    return emulator_app(routes, state)


def main(argv: list[str] | None = None) -> None:
    parser = build_parser("emulators.ollama", "Ollama API emulator", 11434)
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS),
                        help="comma-separated installed models")
    defaults = OllamaConfig()
    for field in fields(OllamaConfig):      # one flag per /_emulator/config switch
        default = getattr(defaults, field.name)
        kind = {bool: int, type(None): int}.get(type(default), type(default))
        parser.add_argument("--" + field.name.replace("_", "-"), type=kind, default=default,
                            help=f"/_emulator/config {field.name} (default {default})")
    args = parser.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    config = {f.name: getattr(args, f.name) for f in fields(OllamaConfig)}
    try:
        app = create_app(models, fault=fault_from_args(args), chunk_delay=args.delay,
                         config=config)
    except ValueError as exc:
        parser.error(str(exc))
    run_cli(app, args.host, args.port)


if __name__ == "__main__":
    main(sys.argv[1:])
