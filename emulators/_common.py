"""Shared machinery for the upstream emulators (no wire formats live here).

Owns:
- deterministic content: `count_prompt_tokens`, `make_reply`, `count_words`,
  `split_chunks` (the numbers gateway tests assert against);
- the fault model (`Fault`, `FaultState`) and request statistics (`Stats`),
  bundled in `EmulatorState`, plus the `/_emulator/*` control routes;
- fault-aware response helpers: `early_fault` (HTTP errors, hang),
  `run_stream` (streaming faults) and `nonstream_response`;
- `serve_in_thread` / `RunningServer` and the CLI plumbing (`build_parser`,
  `run_cli`) that prints `ready http://HOST:PORT` once listening.

Token rules: prompt tokens = sum over messages of ceil(len(text) / 4) + 4,
where text is the string content or the concatenated `text` parts of a list
content.  Completion tokens = whitespace-separated words of generated text.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any, AsyncIterator, Iterable

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

__all__ = [
    "COMMON_FAULTS", "DEFAULT_WORDS", "REASONING_TEXT", "EmulatorState", "Fault",
    "FaultState", "RunningServer", "Stats", "StatsMiddleware", "StreamPlan",
    "build_parser", "control_routes", "count_prompt_tokens", "count_words",
    "early_fault", "fault_from_args", "make_reply", "message_text", "nonstream_response",
    "read_json", "run_cli", "run_stream", "serve_in_thread", "split_chunks",
]

DEFAULT_WORDS = 8
REASONING_TEXT = "Let me think step by step."
COMMON_FAULTS = frozenset({
    "none", "http_500", "http_503", "hang", "slow", "cut",
    "error_before_first_token", "error_mid_stream", "malformed",
})
KEEPALIVE_INTERVAL = 0.5


# --------------------------------------------------------------- content
def message_text(content: Any) -> str:
    """Text of a message content: a string or a list of {"type": "text"} parts."""
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content
                       if isinstance(p, dict) and p.get("type") == "text")
    return "" if content is None else str(content)


def count_prompt_tokens(messages: Iterable[dict] | None) -> int:
    """sum(ceil(len(text) / 4) + 4) over messages (see module docstring)."""
    return sum(math.ceil(len(message_text(m.get("content"))) / 4) + 4
               for m in messages or [])


def count_words(text: str) -> int:
    return len(text.split())


def make_reply(model: str, max_tokens: Any = None) -> tuple[str, str]:
    """Return (reply, finish_reason): "Hello from MODEL." plus n x " word".

    n is max_tokens when it is an int in [0, DEFAULT_WORDS), finish "length";
    otherwise n = DEFAULT_WORDS and finish "stop".
    """
    capped = (isinstance(max_tokens, int) and not isinstance(max_tokens, bool)
              and 0 <= max_tokens < DEFAULT_WORDS)
    n = max_tokens if capped else DEFAULT_WORDS
    return f"Hello from {model}." + " word" * n, "length" if capped else "stop"


def split_chunks(text: str) -> list[str]:
    """One piece per word, each keeping its leading whitespace."""
    return re.findall(r"\s*\S+", text)


# ---------------------------------------------------------- faults/stats
@dataclass
class Fault:
    mode: str = "none"
    delay: float = 5.0
    after_tokens: int = 3
    models: list[str] | None = None
    count: int | None = None


class FaultState:
    """The active fault; `take(model)` returns the fault for one request."""

    def __init__(self, allowed: Iterable[str]):
        self.allowed = frozenset(allowed)
        self.current = Fault()

    def set(self, spec: Any) -> Fault:
        """Validate an /_emulator/fault spec and make it the active fault."""
        spec = spec if isinstance(spec, dict) else {"mode": None}
        get = lambda key, default: default if spec.get(key) is None else spec[key]  # noqa: E731
        fault = Fault(get("mode", "none"), float(get("delay", 5.0)),
                      int(get("after_tokens", 3)), spec.get("models"), spec.get("count"))
        if fault.mode not in self.allowed:
            raise ValueError(f"unknown fault mode {fault.mode!r}; allowed: {sorted(self.allowed)}")
        if fault.models is not None and not (isinstance(fault.models, list) and all(
                isinstance(m, str) for m in fault.models)):
            raise ValueError("models must be a list of strings or null")
        if fault.count is not None and (not isinstance(fault.count, int) or fault.count < 1):
            raise ValueError("count must be a positive integer or null")
        if fault.delay < 0 or fault.after_tokens < 0:
            raise ValueError("delay and after_tokens must be >= 0")
        self.current = fault
        return fault

    def clear(self) -> None:
        self.current = Fault()

    def take(self, model: str | None) -> Fault:
        fault = self.current
        if fault.mode == "none" or (fault.models is not None and model not in fault.models):
            return Fault()
        if fault.count is not None:
            fault.count -= 1
            if fault.count <= 0:
                self.clear()
        return fault


class Stats:
    """Requests per path, chat requests per model, last chat body."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.requests: Counter[str] = Counter()
        self.chat_by_model: Counter[str] = Counter()
        self.last_chat_request: Any = None

    def record_chat(self, model: str, body: Any) -> None:
        self.chat_by_model[model] += 1
        self.last_chat_request = body

    def as_dict(self) -> dict:
        return {"requests": dict(self.requests), "chat_by_model": dict(self.chat_by_model),
                "last_chat_request": self.last_chat_request}


class EmulatorState:
    """Mutable state of one emulator instance (held in `app.state.emulator`)."""

    def __init__(self, faults: Iterable[str], fault: dict | None = None,
                 chunk_delay: float = 0.0):
        self.faults = FaultState(faults)
        self.stats = Stats()
        self.chunk_delay = chunk_delay
        if fault:
            self.faults.set(fault)

    def reset(self) -> None:
        self.stats.reset()
        self.faults.clear()


class StatsMiddleware:
    """Pure ASGI middleware counting requests per path (not /_emulator/*)."""

    def __init__(self, app: Any, stats: Stats):
        self.app, self.stats = app, stats

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and not scope["path"].startswith("/_emulator"):
            self.stats.requests[scope["path"]] += 1
        await self.app(scope, receive, send)


async def read_json(request: Request) -> tuple[Any, str | None]:
    """Return (body, error) where error is None, "empty" or "invalid"."""
    raw = await request.body()
    if not raw.strip():
        return None, "empty"
    try:
        return json.loads(raw), None
    except ValueError:
        return None, "invalid"


def control_routes(state: EmulatorState) -> list[Route]:
    """POST /_emulator/fault, GET /_emulator/fault, GET stats, POST reset."""

    async def set_fault(request: Request) -> Response:
        body, err = await read_json(request)
        try:
            fault = state.faults.set(body if err is None else None)
        except (TypeError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"fault": asdict(fault)})

    async def get_fault(request: Request) -> Response:
        return JSONResponse({"fault": asdict(state.faults.current)})

    async def stats(request: Request) -> Response:
        return JSONResponse(state.stats.as_dict())

    async def reset(request: Request) -> Response:
        state.reset()
        return JSONResponse({"ok": True})

    return [Route("/_emulator/fault", set_fault, methods=["POST"]),
            Route("/_emulator/fault", get_fault, methods=["GET"]),
            Route("/_emulator/stats", stats, methods=["GET"]),
            Route("/_emulator/reset", reset, methods=["POST"])]


CUT_AFTER = 0.05  # seconds between a stream's last token and the dropped connection (mode "cut")


# ------------------------------------------------------ fault responses
async def hang(request: Request) -> None:
    """Never answer: wait until the client goes away (or the task is cancelled)."""
    while not await request.is_disconnected():
        await asyncio.sleep(0.05)


async def abort_connection(request: Request) -> None:
    """Close the TCP connection now, without finishing the response."""
    cycle = getattr(request.receive, "__self__", None)   # uvicorn's request cycle
    transport = getattr(cycle, "transport", None)
    if transport is None:
        raise ConnectionAbortedError("emulator cut")     # server drops it for us
    transport.close()
    for _ in range(200):                                 # until uvicorn notices
        if getattr(cycle, "disconnected", True):
            return
        await asyncio.sleep(0.01)


async def early_fault(request: Request, fault: Fault,
                      http_errors: dict[str, tuple[int, Any]]) -> Response | None:
    """Answer for faults that act before any generation; None otherwise."""
    if fault.mode in http_errors:
        status, body = http_errors[fault.mode]
        return JSONResponse(body, status_code=status)
    if fault.mode == "hang":
        await hang(request)
        return Response(status_code=204)
    return None


@dataclass
class StreamPlan:
    chunks: list[bytes]        # one per generated word
    tail: list[bytes]          # final line(s): done line, usage, [DONE]
    error: bytes               # an in-stream error line/event
    malformed: bytes           # something that is not valid JSON
    keepalive: bytes = b""     # filler while "queued" (keepalive fault)


async def _fillers(seconds: float, filler: bytes) -> AsyncIterator[bytes]:
    deadline = time.monotonic() + seconds
    while True:
        yield filler
        left = deadline - time.monotonic()
        if left <= 0:
            return
        await asyncio.sleep(min(KEEPALIVE_INTERVAL, left))


async def run_stream(request: Request, plan: StreamPlan, fault: Fault,
                     chunk_delay: float = 0.0) -> AsyncIterator[bytes]:
    """Yield the planned stream, bent by the fault."""
    mode = fault.mode
    if mode in ("error_before_first_token", "malformed"):
        yield plan.error if mode == "error_before_first_token" else plan.malformed
        return
    if mode == "slow":
        await asyncio.sleep(fault.delay)
    if mode == "keepalive":
        async for filler in _fillers(fault.delay, plan.keepalive):
            yield filler
    limited = mode in ("cut", "error_mid_stream")
    for i, chunk in enumerate(plan.chunks):
        if limited and i >= fault.after_tokens:
            break
        if i and chunk_delay:
            await asyncio.sleep(chunk_delay)
        yield chunk
    if mode == "cut":
        # A runner dies between tokens, not in the same packet as the last one: let what was sent
        # arrive before the connection drops (data arriving together with the reset may be lost
        # by the client's HTTP stack, aiohttp's included, before it is read).
        await asyncio.sleep(CUT_AFTER)
        await abort_connection(request)
        return
    if mode == "error_mid_stream":
        yield plan.error
        return
    for line in plan.tail:
        yield line


async def nonstream_response(request: Request, fault: Fault, body: dict, *,
                             error: tuple[int, Any], malformed: bytes,
                             filler: bytes = b"\n") -> Response:
    """A complete JSON answer, bent by the fault."""
    mode = fault.mode
    if mode == "cut":
        await abort_connection(request)
        return Response(status_code=204)
    if mode in ("error_before_first_token", "error_mid_stream"):
        return JSONResponse(error[1], status_code=error[0])
    if mode == "malformed":
        return Response(malformed, media_type="application/json")
    if mode == "slow":
        await asyncio.sleep(fault.delay)
    payload = json.dumps(body).encode()
    if mode == "keepalive":
        async def blanks_then_body() -> AsyncIterator[bytes]:
            async for blank in _fillers(fault.delay, filler):
                yield blank
            yield payload
        return StreamingResponse(blanks_then_body(), media_type="application/json")
    return Response(payload, media_type="application/json")


# ---------------------------------------------------------------- running
@dataclass
class RunningServer:
    server: uvicorn.Server
    thread: threading.Thread
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self, timeout: float = 5.0) -> None:
        self.server.should_exit = True
        self.server.force_exit = True      # do not wait for hanging requests
        self.thread.join(timeout)

    def __enter__(self) -> "RunningServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _server(app: Any, host: str, port: int) -> uvicorn.Server:
    return uvicorn.Server(uvicorn.Config(
        app, host=host, port=port, log_level="warning", lifespan="off",
        timeout_graceful_shutdown=1))


def _bound_port(server: uvicorn.Server) -> int:
    return next(sock.getsockname()[1] for srv in server.servers for sock in srv.sockets)


def serve_in_thread(app: Any, host: str = "127.0.0.1", port: int = 0,
                    timeout: float = 10.0) -> RunningServer:
    """Run `app` with uvicorn in a daemon thread; return once it listens."""
    server = _server(app, host, port)
    thread = threading.Thread(target=server.run, name=f"emulator-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"emulator did not start on {host}:{port}")
        time.sleep(0.01)
    return RunningServer(server, thread, host, _bound_port(server))


def build_parser(module: str, description: str, default_port: int) -> argparse.ArgumentParser:
    """Flags shared by both emulators: --host --port --fault --delay --fault-delay
    --after-tokens."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=default_port, help="0 = any free port")
    parser.add_argument("--fault", default="none", help="initial fault mode")
    parser.add_argument("--delay", type=float, default=0.0,
                        help="seconds between streamed chunks")
    parser.add_argument("--fault-delay", type=float, default=5.0,
                        help="seconds for the slow/keepalive faults")
    parser.add_argument("--after-tokens", type=int, default=3,
                        help="chunks sent before cut/error_mid_stream")
    return parser


def fault_from_args(args: argparse.Namespace) -> dict:
    return {"mode": args.fault, "delay": args.fault_delay, "after_tokens": args.after_tokens}


def emulator_app(routes: list[Route], state: EmulatorState) -> Starlette:
    """The emulator's own routes plus the /_emulator control routes, with request stats."""
    app = Starlette(routes=[*routes, *control_routes(state)],
                    middleware=[Middleware(StatsMiddleware, stats=state.stats)])
    app.state.emulator = state
    return app


def run_cli(app: Any, host: str, port: int) -> None:
    """Serve in the foreground; print `ready http://HOST:PORT` once listening."""
    server = _server(app, host, port)

    async def main() -> None:
        task = asyncio.ensure_future(server.serve())
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        if server.started:
            print(f"ready http://{host}:{_bound_port(server)}", flush=True)
        await task

    asyncio.run(main())
