"""The gateway's error shapes: OpenAI-shaped error bodies (and Anthropic's on its Messages routes),
clean messages, and the stream error events.

Owns
- `error_body(status, message, param, code)`: `{"error": {"message", "type", "param", "code"}}` with
  `type` taken from the status (`STATUS_TYPES`), and `clean_message`, which cuts tracebacks and
  LiteLLM's debug text out of messages and masks key-like strings, masked keys (`****a671`) and
  any fragment (4+ characters at either end) of the gateway's own secrets (GATEWAY_LOG_SECRETS:
  DeepSeek, master and client keys), so an upstream message never gives one away;
- `send_json` / `send_error`, the one ASGI JSON responder, and the stream error events
  (`stream_error_event`, `anthropic_error_event`, `rewrite_stream_errors`).
The ASGI layer that applies them to every response is gateway.error_layer.
How it fails: nothing here raises; a body it cannot parse gets a generic message for its status.
"""

from __future__ import annotations

import functools
import json
import os
import re

from hooks import context
from litellm_compat.wording import DEBUG_TAILS as _DEBUG_TAILS
from litellm_compat.wording import LITELLM_PREFIX as _LITELLM_PREFIX
from litellm_compat.wording import PROVIDER_PREFIX as _PROVIDER

STATUS_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 402: "insufficient_quota",
    403: "permission_error", 404: "not_found_error", 405: "invalid_request_error",
    408: "timeout_error", 409: "conflict_error", 413: "request_too_large",
    415: "invalid_request_error", 422: "invalid_request_error", 429: "rate_limit_error",
    500: "server_error", 502: "server_error", 503: "service_unavailable_error", 504: "timeout_error",
}

_TRACEBACK = re.compile(r"\s*Traceback \(most recent call last\).*", re.S)
_STATUS_DICT = re.compile(r"^\d{3}: \{'(?:error|message)': ['\"](.*)['\"]\}$", re.S)  # str(HTTPException(detail=dict))
_SECRETS = (re.compile(r"\bsk-[A-Za-z0-9_\-]{6,}"), re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{8,}"))
_PROVIDER_NAMES = {"ollama": "Ollama", "deepseek": "DeepSeek", "openai": "OpenAI"}
_MASKED_KEY = re.compile(r"(?:\*{3,}|\.{3}|…)[A-Za-z0-9_\-]{2,}")  # "****a671", "sk-...a671": a key's visible end
SECRETS_ENV = "GATEWAY_LOG_SECRETS"  # gateway.logs: the secrets `gateway serve` knows, comma-separated
# LiteLLM/aiohttp wording that means nothing to a client, and what it means (mid-stream errors, issue 13).
_INTERNALS = (
    (re.compile(r"KeyError: '\w+', Got unexpected response from Ollama: \{'error': ['\"](.*?)['\"]\}", re.S),
     r"\1"),
    (re.compile(r"Response payload is not completed.*?(?:>|$)", re.S),
     "the backend closed the connection before its response was complete"),
)
# Anthropic's error types by status (docs.anthropic.com/en/api/errors), for its Messages routes.
ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    415: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}
MESSAGES_SUFFIXES = ("/v1/messages", "/v1/messages/count_tokens")


def error_type(status: int) -> str:
    return STATUS_TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")


def error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": error_type(status), "param": param, "code": code}}


def is_messages(path: str | None) -> bool:
    return path is not None and path.rstrip("/").endswith(MESSAGES_SUFFIXES)


def anthropic_shape(status: int, body: dict) -> dict:
    """An OpenAI-shaped error body in Anthropic's shape; `param` and `code` stay inside `error`."""
    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    kind = ANTHROPIC_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": error.get("message", ""),
                                       "param": error.get("param"), "code": error.get("code")}}


def mask_secrets(text: str) -> str:
    text = secret_fragments().sub("***", text)
    text = _MASKED_KEY.sub("****", _SECRETS[0].sub("sk-***", text))
    return _SECRETS[1].sub(lambda m: f"{m.group(1)} ***", text)


def fragments_pattern(secrets: list[str], shortest: int = 4) -> re.Pattern[str]:
    """4+ characters that end a secret (where a word ends), or begin one (as a whole word)."""
    secrets = [s for s in secrets if len(s) >= 2 * shortest]
    ends = {s[-n:] for s in secrets for n in range(shortest, len(s) + 1)}
    starts = {s[:n] for s in secrets for n in range(shortest, len(s) + 1)}
    if not secrets:
        return re.compile(r"(?!)")

    def alternatives(parts: set[str]) -> str:
        return "|".join(re.escape(p) for p in sorted(parts, key=len, reverse=True))

    return re.compile(
        rf"(?<![A-Za-z0-9])(?:{alternatives(starts)})(?![A-Za-z0-9])|(?:{alternatives(ends)})(?![A-Za-z0-9])"
    )


@functools.cache
def secret_fragments() -> re.Pattern[str]:
    return fragments_pattern([s for s in os.environ.get(SECRETS_ENV, "").split(",") if s])


def clean_message(text: str, limit: int = 1000) -> str:
    """A client-facing message: no traceback, no LiteLLM debug tail, no keys, upstream JSON unwrapped."""
    text = _DEBUG_TAILS.sub("", _TRACEBACK.sub("", str(text)))
    text = _STATUS_DICT.sub(r"\1", text)
    text = unwrap_provider_errors(_LITELLM_PREFIX.sub("", text))
    for pattern, meaning in _INTERNALS:
        text = pattern.sub(meaning, text)
    text = " ".join(mask_secrets(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def unwrap_provider_errors(text: str) -> str:
    """`DeepseekException - {"error": {"message": "X"}}` -> `DeepSeek: X`."""
    out, pos = [], 0
    for match in _PROVIDER.finditer(text):
        if match.start() < pos:
            continue
        out += [text[pos:match.start()], f"{_PROVIDER_NAMES.get(match.group(1).lower(), match.group(1))}: "]
        pos = match.end()
        if text.startswith("{", pos):
            try:
                inner, pos = json.JSONDecoder().raw_decode(text, pos)
            except ValueError:
                continue
            error = inner.get("error", inner) if isinstance(inner, dict) else inner
            out.append(str(error.get("message") or error) if isinstance(error, dict) else str(error))
    return "".join(out) + text[pos:]


def default_message(status: int, method: str, path: str) -> str:
    if status == 404:
        return (f"{method} {path} is not a route of this gateway; the OpenAI API is under /v1 "
                "(e.g. POST /v1/chat/completions).")
    if status == 405:
        return f"{path} does not accept {method}; check the method (chat completions are POST)."
    request_id = getattr(context.current.get(), "request_id", None)
    if status >= 500:
        return f"The gateway hit an internal error; its log has the details under request id {request_id}."
    return f"The request failed with HTTP {status}."


def parse_error(raw: bytes, content_type: str) -> tuple[str | None, str | None, str | None]:
    """(message, param, code) out of whatever error body LiteLLM, FastAPI or Starlette produced."""
    text = raw.decode("utf-8", errors="replace")
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        error = data.get("error", data.get("detail", data.get("message")))
        if isinstance(error, dict):
            error = error.get("error", error) if "message" not in error else error
        if isinstance(error, dict):
            code, kind = error.get("code"), error.get("type")
            if code is None or str(code).isdigit():  # LiteLLM puts the status there; its type says more
                code = (
                    kind
                    if isinstance(kind, str) and kind not in STATUS_TYPES.values() and kind != "internal_server_error"
                    else None
                )
            param = error.get("param")
            return _str(error.get("message") or error.get("error")), _str(param), _str(code)
        if isinstance(error, list):  # FastAPI validation errors
            parts = [
                f"{'.'.join(str(p) for p in e.get('loc', [])[1:]) or 'body'}: {e.get('msg')}"
                for e in error
                if isinstance(e, dict)
            ]
            return "; ".join(parts) or None, None, "invalid_value"
        return _str(error), None, None
    if "html" in content_type:
        text = re.sub(r"<[^>]+>", " ", text)
    return (text.strip() or None), None, None


def _str(value: object) -> str | None:
    return None if value in (None, "", "None") else str(value)


def shaped_error(status: int, raw: bytes, content_type: str, method: str, path: str) -> dict:
    message, param, code = parse_error(raw, content_type)
    if message in (None, "Not Found", "Method Not Allowed", "Internal Server Error", "Internal server error"):
        message = default_message(status, method, path)
    return error_body(status, clean_message(message), param, code)


def stream_error_event(message: str, code: str) -> bytes:
    return b"data: " + json.dumps(error_body(500, message, None, code)).encode() + b"\n\n"


def anthropic_error_event(message: str, code: str) -> bytes:
    """Anthropic's stream error event (`event: error`), which the anthropic SDK raises as an APIError."""
    return (
        b"event: error\ndata: "
        + json.dumps(anthropic_shape(500, error_body(500, message, None, code))).encode()
        + b"\n\n"
    )


def rewrite_stream_errors(chunk: bytes, anthropic: bool = False) -> bytes:
    """Normalize LiteLLM's error events (sent when a stream fails after its start): `data: {"error": ...}`,
    or on Messages `event: error` + `data: {"type": "error", "error": ...}`."""
    events = chunk.split(b"\n\n")
    for i, event in enumerate(events):
        data = event.split(b"data: ", 1)[1] if b"data: {" in event else b""
        if b'"error"' not in data or not (event.startswith(b"data: {") or event.startswith(b"event: error")):
            continue
        try:
            error = json.loads(data).get("error")
        except (ValueError, AttributeError):
            continue
        if error is not None:
            detail = clean_message(error.get("message", "") if isinstance(error, dict) else error).rstrip(".")
            message = (
                f"The stream failed after it had started, so the response is incomplete: {detail}. Retry the request."
            )
            events[i] = (anthropic_error_event if anthropic else stream_error_event)(message, "stream_interrupted")[:-2]
    return b"\n\n".join(events)


async def send_json(send, status: int, body: object, headers: list | tuple | None = None) -> None:
    """The one hand-written ASGI JSON response (errors here and in gateway.gate, /health in gateway.app)."""
    payload = json.dumps(body).encode()
    kept = [
        (k, v) for k, v in headers or [] if k.lower() not in (b"content-length", b"content-type", b"content-encoding")
    ]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*kept, (b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": payload})


async def send_error(send, status: int, body: dict, headers: list | None = None, path: str | None = None) -> None:
    """Send `body` (OpenAI-shaped) with `status`; in Anthropic's shape when `path` is a Messages route."""
    await send_json(send, status, anthropic_shape(status, body) if is_messages(path) else body, headers)
