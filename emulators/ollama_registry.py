"""Model-management endpoints of the Ollama emulator (no inference here).

Owns `/`, `/api/version`, `/api/tags`, `/api/ps`, `/api/show`, `/api/pull`
(progress lines), `/v1/models` and the control endpoint
`POST /_emulator/models`, plus the `{"error": ...}` body shared with the
inference endpoints.  The endpoints read the emulator state
(`request.app.state.emulator`: `installed`, `loaded`, `config`,
`set_models`) that emulators.ollama builds.

Sources: server/routes.go (ListHandler, PsHandler, ShowHandler,
PullHandler: 404 `model 'X' not found`, pull progress lines and the
`pull model manifest: file does not exist` error).

How it fails: a bad body is a 400 `{"error": ...}`; an unknown model a 404;
an unpullable name a 500 (non-stream) or an error line (stream), as Ollama.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from emulators._common import read_json
from emulators.ollama_generate import ndjson
from emulators.ollama_models import CATALOGUE, canonical, details, digest_of, show_body, spec_of

__all__ = ["PULL_ERROR", "VERSION", "error", "now_iso", "openai_models", "ps", "pull", "root",
           "set_models", "show", "tags", "version"]

VERSION = "0.12.6"
PULL_ERROR = "pull model manifest: file does not exist"


def now_iso(delta: float = 0.0) -> str:
    moment = datetime.now(timezone.utc) + timedelta(seconds=delta)
    return moment.isoformat().replace("+00:00", "Z")


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


# ----------------------------------------------------------- model info
def tag_entry(name: str, modified_at: str) -> dict:
    return {"name": name, "model": name, "modified_at": modified_at,
            "size": spec_of(name).size, "digest": digest_of(name), "details": details(name)}


def ps_entry(name: str, expires_at: str, context_length: int) -> dict:
    entry = {k: v for k, v in tag_entry(name, "").items() if k != "modified_at"}
    return {**entry, "expires_at": expires_at, "size_vram": 0, "context_length": context_length}


async def root(request: Request) -> Response:
    return PlainTextResponse("Ollama is running")


async def version(request: Request) -> Response:
    return JSONResponse({"version": VERSION})


async def tags(request: Request) -> Response:
    state = request.app.state.emulator  # emulators.ollama.OllamaState
    return JSONResponse({"models": [tag_entry(n, t) for n, t in state.installed.items()]})


async def ps(request: Request) -> Response:
    state = request.app.state.emulator  # emulators.ollama.OllamaState
    return JSONResponse({"models": [ps_entry(n, t, state.loaded_ctx.get(n, state.config.context_length))
                                   for n, t in state.loaded.items()]})


async def openai_models(request: Request) -> Response:
    state = request.app.state.emulator  # emulators.ollama.OllamaState
    return JSONResponse({"object": "list", "data": [
        {"id": n, "object": "model", "created": 1700000000, "owned_by": "library"}
        for n in state.installed]})


async def named_request(request: Request) -> tuple[dict, str, Response | None]:
    """Body and model name of /api/show or /api/pull, or a 400 response."""
    body, err = await read_json(request)
    if err or not isinstance(body, dict):
        return {}, "", error(400, "missing request body" if err == "empty" else "invalid JSON")
    name = body.get("model") or body.get("name")
    if not isinstance(name, str) or not name:
        return body, "", error(400, "model is required")
    return body, name, None


async def show(request: Request) -> Response:
    state = request.app.state.emulator  # emulators.ollama.OllamaState
    body, name, invalid = await named_request(request)
    if invalid:
        return invalid
    if canonical(name) not in state.installed:
        return error(404, f"model '{name}' not found")
    return JSONResponse(show_body(canonical(name), state.installed[canonical(name)]))


def pullable(name: str) -> bool:
    return name in CATALOGUE or (
        "doesnotexist" not in name
        and re.fullmatch(r"[a-z0-9][a-z0-9._/-]*:[A-Za-z0-9._-]+", name) is not None)


def pull_lines(name: str) -> list[dict]:
    total, digest = spec_of(name).size, f"sha256:{digest_of(name)}"
    lines = [{"status": f"pulling {digest[7:19]}", "digest": digest, "total": total,
               "completed": total * k // 4} for k in range(5)]
    return lines + [{"status": s} for s in ("verifying sha256 digest", "writing manifest")]


async def pull(request: Request) -> Response:
    state = request.app.state.emulator  # emulators.ollama.OllamaState
    body, name, invalid = await named_request(request)
    if invalid:
        return invalid
    name, ok = canonical(name), pullable(canonical(name))
    if body.get("stream", True) is False:
        if not ok:
            return error(500, PULL_ERROR)
        state.installed[name] = now_iso()
        return JSONResponse({"status": "success"})

    async def progress():
        yield ndjson({"status": "pulling manifest"})
        if not ok:
            yield ndjson({"error": PULL_ERROR})
            return
        for line in pull_lines(name):
            yield ndjson(line)
        state.installed[name] = now_iso()
        yield ndjson({"status": "success"})

    return StreamingResponse(progress(), media_type="application/x-ndjson")


async def set_models(request: Request) -> Response:
    state = request.app.state.emulator  # emulators.ollama.OllamaState
    body, err = await read_json(request)
    models = body.get("models") if isinstance(body, dict) else None
    if err or not isinstance(models, list) or not all(isinstance(m, str) for m in models):
        return error(400, 'expected {"models": [names]}')
    state.set_models(models)
    return JSONResponse({"models": list(state.installed)})


