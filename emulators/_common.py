"""Shared machinery for the upstream emulators (no wire formats live here).

Owns:
- the fault model (`Fault`, `FaultState`), request statistics (`Stats`) and
  switchable settings (`apply_config`), bundled in `EmulatorState`, plus the
  `/_emulator/*` control routes (fault, config, stats, reset);
- the request helpers `read_json` and `emulator_app` (routes + control
  routes + request counting).

What a fault does to one answer lives in `emulators._responses`.
Deterministic content (token rules, replies, schema instances) lives in
`emulators._content`, running a server in `emulators._server`; both are
re-exported here for the tests that import them from this module.

How it fails: a bad `/_emulator/fault` or `/_emulator/config` body is a 400
`{"error": ...}` that names the field; the active fault and config are left
unchanged.  Nothing here catches errors of the wire-format modules.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any, Iterable

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from emulators._content import (
    DEFAULT_WORDS, REASONING_TEXT, count_prompt_tokens, count_words, make_reply,
    message_text, split_chunks,
)
from emulators._server import (
    RunningServer, build_parser, fault_from_args, run_cli, serve_in_thread,
)

__all__ = [
    "COMMON_FAULTS", "DEFAULT_WORDS", "REASONING_TEXT", "EmulatorState", "Fault",
    "FaultState", "RunningServer", "Stats", "StatsMiddleware", "apply_config",
    "build_parser", "control_routes", "count_prompt_tokens", "count_words", "emulator_app",
    "fault_from_args", "make_reply", "message_text", "read_json", "run_cli",
    "serve_in_thread", "split_chunks",
]

COMMON_FAULTS = frozenset({
    "none", "http_500", "http_503", "hang", "slow", "cut",
    "error_before_first_token", "error_mid_stream", "malformed",
})


# ---------------------------------------------------------- faults/stats
@dataclass
class Fault:
    mode: str = "none"
    delay: float = 5.0
    after_tokens: int = 3
    models: list[str] | None = None
    count: int | None = None
    status: int = 500             # error_status_before_first_token
    seconds: float | None = None  # busy_keepalive: None = `delay`, 0 = until the client goes
    interval: float = 1.0         # busy_keepalive: seconds between keep-alives


class FaultState:
    """The active fault; `take(model)` returns the fault for one request."""

    def __init__(self, allowed: Iterable[str]):
        self.allowed = frozenset(allowed)
        self.current = Fault()

    def set(self, spec: Any) -> Fault:
        """Validate an /_emulator/fault spec and make it the active fault."""
        spec = spec if isinstance(spec, dict) else {"mode": None}
        get = lambda key, default: default if spec.get(key) is None else spec[key]  # noqa: E731
        seconds = spec.get("seconds")
        fault = Fault(get("mode", "none"), float(get("delay", 5.0)),
                      int(get("after_tokens", 3)), spec.get("models"), spec.get("count"),
                      int(get("status", 500)), None if seconds is None else float(seconds),
                      float(get("interval", 1.0)))
        if fault.mode not in self.allowed:
            raise ValueError(f"unknown fault mode {fault.mode!r}; allowed: {sorted(self.allowed)}")
        if fault.models is not None and not (isinstance(fault.models, list) and all(
                isinstance(m, str) for m in fault.models)):
            raise ValueError("models must be a list of strings or null")
        if fault.count is not None and (not isinstance(fault.count, int) or fault.count < 1):
            raise ValueError("count must be a positive integer or null")
        if fault.delay < 0 or fault.after_tokens < 0 or (fault.seconds or 0) < 0:
            raise ValueError("delay, after_tokens and seconds must be >= 0")
        if not 400 <= fault.status <= 599 or fault.interval <= 0:
            raise ValueError("status must be in 400..599 and interval > 0")
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


def apply_config(current: Any, spec: Any) -> Any:
    """A copy of the dataclass `current` with the fields of `spec` (a dict) set.

    Types follow the defaults (an int is accepted for a float; a field whose
    default is None takes an int or null); `validate()` of the result runs last.
    """
    if not isinstance(spec, dict):
        raise ValueError("expected a JSON object of settings")
    fields = {f.name: f for f in dataclasses.fields(current)}
    changes = {}
    for key, value in spec.items():
        if key not in fields:
            raise ValueError(f"unknown setting {key!r}; known: {sorted(fields)}")
        default = fields[key].default
        kind = type(default) if default is not None else int
        ok = (value is None and default is None) or (
            isinstance(value, kind) and not (isinstance(value, bool) and kind is not bool)
        ) or (kind is float and isinstance(value, int) and not isinstance(value, bool))
        if not ok:
            raise ValueError(f"setting {key!r} must be {kind.__name__}, got {value!r}")
        changes[key] = float(value) if kind is float else value
    updated = dataclasses.replace(current, **changes)
    updated.validate()
    return updated


class Stats:
    """Requests per path, chat requests per model, last chat bodies, runner load."""

    def __init__(self) -> None:
        self.running = self.queued = 0          # now (owned by the runner slots)
        self.reset()

    def reset(self) -> None:
        self.requests: Counter[str] = Counter()
        self.chat_by_model: Counter[str] = Counter()
        self.last_chat_request: Any = None
        self.last_request_by_model: dict[str, Any] = {}
        self.last_options: dict[str, Any] = {}
        self.max_running = self.running           # peak since reset
        self.max_queued = self.queued             # peak of requests waiting for a slot since reset
        self.cancelled = 0                        # requests whose client went away
        self.reloads = 0                          # Ollama: a model reloaded for another num_ctx
        self.images_ignored = 0                   # Ollama: requests with images a text model dropped

    def record_chat(self, model: str, body: Any) -> None:
        self.chat_by_model[model] += 1
        self.last_chat_request = body
        self.last_request_by_model[model] = body
        options = body.get("options") if isinstance(body, dict) else None
        self.last_options[model] = options if isinstance(options, dict) else {}

    def as_dict(self) -> dict:
        return {"requests": dict(self.requests), "chat_by_model": dict(self.chat_by_model),
                "last_chat_request": self.last_chat_request,
                "last_request_by_model": self.last_request_by_model,
                "last_options": self.last_options, "running": self.running,
                "queued": self.queued, "max_running": self.max_running, "max_queued": self.max_queued,
                "cancelled": self.cancelled, "reloads": self.reloads,
                "images_ignored": self.images_ignored}


@dataclass
class NoConfig:
    def validate(self) -> None:
        return None


class EmulatorState:
    """Mutable state of one emulator instance (held in `app.state.emulator`)."""

    def __init__(self, faults: Iterable[str], fault: dict | None = None,
                 chunk_delay: float = 0.0, config: Any = None):
        self.faults = FaultState(faults)
        self.stats = Stats()
        self.chunk_delay = chunk_delay
        self.initial_config = config if config is not None else NoConfig()
        self.initial_config.validate()
        self.config = self.initial_config
        if fault:
            self.faults.set(fault)

    def reset(self) -> None:
        self.stats.reset()
        self.faults.clear()
        self.set_config(self.initial_config)

    def set_config(self, config: Any) -> None:
        """Make `config` current (subclasses react, e.g. wake queued requests)."""
        self.config = config


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
    """POST/GET /_emulator/fault, POST/GET /_emulator/config, GET stats, POST reset."""

    async def set_fault(request: Request) -> Response:
        body, err = await read_json(request)
        try:
            fault = state.faults.set(body if err is None else None)
        except (TypeError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"fault": asdict(fault)})

    async def get_fault(request: Request) -> Response:
        return JSONResponse({"fault": asdict(state.faults.current)})

    async def set_config(request: Request) -> Response:
        body, err = await read_json(request)
        try:
            state.set_config(apply_config(state.config, body if err is None else None))
        except (TypeError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"config": asdict(state.config)})

    async def get_config(request: Request) -> Response:
        return JSONResponse({"config": asdict(state.config)})

    async def stats(request: Request) -> Response:
        return JSONResponse(state.stats.as_dict())

    async def reset(request: Request) -> Response:
        state.reset()
        return JSONResponse({"ok": True})

    return [Route("/_emulator/fault", set_fault, methods=["POST"]),
            Route("/_emulator/fault", get_fault, methods=["GET"]),
            Route("/_emulator/config", set_config, methods=["POST"]),
            Route("/_emulator/config", get_config, methods=["GET"]),
            Route("/_emulator/stats", stats, methods=["GET"]),
            Route("/_emulator/reset", reset, methods=["POST"])]


def emulator_app(routes: list[Route], state: EmulatorState) -> Starlette:
    """The emulator's own routes plus the /_emulator control routes, with request stats."""
    app = Starlette(routes=[*routes, *control_routes(state)],
                    middleware=[Middleware(StatsMiddleware, stats=state.stats)])
    app.state.emulator = state
    return app
