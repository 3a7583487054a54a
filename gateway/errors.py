"""The gateway's one error module: OpenAI-shaped error bodies, and the ASGI layer that makes every
error a client sees one of them.

Owns
- `error_body(status, message, param, code)`: `{"error": {"message", "type", "param", "code"}}` with
  `type` taken from the status (`STATUS_TYPES`), and `clean_message`, which cuts tracebacks and
  LiteLLM's debug text out of messages and masks key-like strings, masked keys (`****a671`) and
  any fragment (4+ characters at either end) of the gateway's own secrets (GATEWAY_LOG_SECRETS:
  DeepSeek, master and client keys), so an upstream message never gives one away;
- `ErrorLayer`, the ASGI middleware in front of LiteLLM (behind gateway.gate, so every
  request it sees on the API has a valid key, whatever header carried it) that
  - answers 413 for a body over `max_body_bytes` (by Content-Length, or counted for chunked
    bodies), 400 for invalid UTF-8, invalid or too deeply nested JSON, 400 for fields clients may
    not set (ours and LiteLLM's banned ones, `RequestLimits.body_check`), 404 `model_not_found`
    for a model that is not a configured group, 400 for malformed chat-completion parameters and
    an `n` over the model's cap (`proxy_config.chat_checks`), before LiteLLM parses anything;
  - rewrites every error response that is not OpenAI-shaped (FastAPI `{"detail"}`, plain text,
    HTML) and normalizes shaped ones, keeping the status;
  - rewrites `data: {"error": ...}` events of a stream, and ends a chat-completion stream that
    stops without `data: [DONE]` with an error event, so a cut stream never looks complete;
  - answers in Anthropic's error shape on its Messages routes (`anthropic_shape`: `{"type":
    "error", "error": {"type", "message"}}`, what the anthropic SDK and Claude clients read, with
    our `param` and `code` kept inside), rewrites their `event: error` stream events the same way,
    and ends a Messages stream that stops without `message_stop` with one;
  - uses the routing hook's verdict on a failed request (`RequestContext.final_error`, the
    both-tiers 503) where LiteLLM's handler ignores what the failure hook returned (/v1/messages);
  - reads (and drops) an oversized body before its 413, for at most `LINGER_SECONDS` and
    `drain_bytes` (nginx's lingering close): closing with unread bytes makes the kernel reset
    the connection, and the client would never see the status.
How it fails: a body it cannot parse gets a generic message for its status; an exception from
the inner app becomes a 500 (or an error event when a stream had started); successes pass
through untouched.
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import json
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from hooks import context
from hooks.ledger import INFERENCE_SUFFIXES, is_inference
from litellm_compat.wording import DEBUG_TAILS as _DEBUG_TAILS
from litellm_compat.wording import LITELLM_PREFIX as _LITELLM_PREFIX
from litellm_compat.wording import PROVIDER_PREFIX as _PROVIDER
from proxy_config.chat_checks import (RequestRejected, check_chat, check_client_fields, check_json, check_n,
                                      check_served_model)

log = logging.getLogger("gateway.errors")

STATUS_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 402: "insufficient_quota",
    403: "permission_error", 404: "not_found_error", 405: "invalid_request_error",
    408: "timeout_error", 409: "conflict_error", 413: "request_too_large",
    415: "invalid_request_error", 422: "invalid_request_error", 429: "rate_limit_error",
    500: "server_error", 502: "server_error", 503: "service_unavailable_error", 504: "timeout_error",
}
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
OPENAI_JSON_SUFFIXES = (*INFERENCE_SUFFIXES, "/moderations")  # the routes whose body must be OpenAI JSON
MAX_ERROR_BODY = 256 * 1024  # an error body larger than this is cut before parsing
STREAM_INCOMPLETE = "The stream ended before the backend finished, so the response is incomplete. Retry the request."

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
LINGER_SECONDS = 30.0  # nginx's lingering_time: how long an oversized body is read before the 413 and the close


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


@dataclass(frozen=True)
class RequestLimits:
    max_body_bytes: int
    max_json_depth: int = 64
    max_output_tokens: int = 1_000_000  # largest max_tokens any configured model could honour
    models: frozenset[str] | None = None  # the configured model groups; None = do not check
    max_n: Mapping[str, int] = field(default_factory=dict)  # per model group
    body_check: Callable[[dict, str], None] | None = None  # LiteLLM's banned fields (gateway.gate)

    @property
    def drain_bytes(self) -> int:
        """How much of an oversized body is read (and dropped) so the client can read the 413."""
        return max(64 * self.max_body_bytes, 256 * 1024 * 1024)


class ClientGone(Exception):
    """The client disconnected while sending its body: nobody to answer."""


class ErrorLayer:
    def __init__(self, app, limits: RequestLimits) -> None:
        self.app, self.limits = app, limits

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            receive = await self.checked_receive(scope, receive)
        except RequestRejected as exc:
            await send_error(
                send, exc.status, error_body(exc.status, exc.message, exc.param, exc.code), path=scope["path"]
            )
            return
        except ClientGone:
            return
        filtered = ResponseFilter(send, scope)
        try:
            await self.app(scope, receive, filtered)
        except Exception:
            log.exception("unhandled error in %s %s", scope["method"], scope["path"])
            if not await filtered.fail():
                raise  # a started non-stream response cannot be repaired: uvicorn drops the connection

    async def checked_receive(self, scope, receive):
        """Read and check the body (size, then JSON), and hand LiteLLM a replay of it."""
        headers = dict(scope["headers"])
        limit = self.limits.max_body_bytes
        length = headers.get(b"content-length", b"").strip()
        if length.isdigit() and int(length) > limit:
            await drain(receive, self.limits.drain_bytes)  # read it, so the client gets to read our answer
            raise too_large(limit)
        if scope["method"] not in BODY_METHODS:
            return receive
        body = await read_body(receive, limit, self.limits.drain_bytes)
        path = scope["path"]
        content_type = headers.get(b"content-type", b"").decode("latin-1").lower()
        openai_path = path.endswith(OPENAI_JSON_SUFFIXES)
        if "json" in content_type or (openai_path and "multipart/" not in content_type):
            value = check_json(body, self.limits.max_json_depth, required=openai_path)
            if openai_path:  # gateway.gate let only authenticated callers this far
                self.check_request(value, path)
            elif isinstance(value, dict) and self.limits.body_check is not None:
                self.limits.body_check(value, path)  # LiteLLM's own rejection would be a 500 there
        return replay(body, receive)

    def check_request(self, value: dict, path: str) -> None:
        limits = self.limits
        check_client_fields(value)
        if limits.body_check is not None:
            limits.body_check(value, path)
        model_in_path = "/deployments/" in path or "/engines/" in path
        model = path_model(path) if model_in_path else value.get("model")
        if path.endswith("/chat/completions"):
            check_chat(value, model_in_path=model_in_path, max_output_tokens=limits.max_output_tokens)
        if limits.models is not None and is_inference(path):
            check_served_model(model, limits.models)
        if path.endswith("/completions"):
            check_n(value, model, limits.max_n)


def path_model(path: str) -> str | None:
    """`/openai/deployments/{model}/...` and `/engines/{model}/...`: the model in the path."""
    parts = path.split("/")
    for marker in ("deployments", "engines"):
        if marker in parts and parts.index(marker) + 1 < len(parts):
            return parts[parts.index(marker) + 1]
    return None


def too_large(limit: int) -> RequestRejected:
    return RequestRejected(413, f"The request body is larger than this gateway's limit of {limit} bytes; "
                                "send a smaller request, or raise MAX_BODY_BYTES in .env.", code="request_too_large")


async def read_body(receive, limit: int, drain_bytes: int) -> bytes:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            if message.get("more_body"):
                await drain(receive, drain_bytes - size)
            raise too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def drain(receive, budget: int, seconds: float = LINGER_SECONDS) -> None:
    """Read and drop the rest of a body: up to `budget` bytes, for at most `seconds`."""
    try:
        async with asyncio.timeout(seconds):
            while budget > 0:
                message = await receive()
                budget -= len(message.get("body", b""))
                if message["type"] != "http.request" or not message.get("more_body"):
                    return
    except TimeoutError:
        log.info("stopped reading an oversized body after %.0f s", seconds)


def replay(body: bytes, receive):
    sent = False

    async def replay_receive():
        nonlocal sent
        if sent:
            return await receive()  # after the body: disconnect notices
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay_receive


class ResponseFilter:
    """The send() LiteLLM gets: holds and rewrites error responses, watches streams."""

    def __init__(self, send, scope) -> None:
        self.send, self.method, self.path = send, scope["method"], scope["path"]
        self.held: dict | None = None  # the start of an error response being rewritten
        self.chunks: list[bytes] = []
        self.started = self.finished = self.sse = False
        self.done = self.errored = False
        self.tail = b""

    async def __call__(self, message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            if message["status"] >= 400 and self.method != "HEAD":
                self.held = message
                return
            content_type = dict(message.get("headers", [])).get(b"content-type", b"")
            self.sse = content_type.startswith(b"text/event-stream")
            self.started = True
        elif kind == "http.response.body":
            if self.held is not None:
                await self.collect(message)
                return
            if self.sse:
                message = self.watch_stream(message)
            self.finished = not message.get("more_body", False)
        await self.send(message)

    async def collect(self, message) -> None:
        if sum(map(len, self.chunks)) < MAX_ERROR_BODY:
            self.chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            await self.send_held()

    async def send_held(self) -> None:
        start, self.held = self.held, None
        headers = dict(start.get("headers", []))
        raw = b"".join(self.chunks)[:MAX_ERROR_BODY]
        if headers.get(b"content-encoding", b"").strip() == b"gzip":
            try:
                raw = gzip.decompress(raw)
            except (OSError, EOFError):
                raw = b""
        status = start["status"]
        # hooks.routing's verdict (a refusal, both tiers failed)
        final = getattr(context.current.get(), "final_error", None)
        if final is not None:
            status, body = final[0], error_body(final[0], clean_message(final[1]), final[2], final[3])
        else:
            body = shaped_error(
                status, raw, headers.get(b"content-type", b"").decode("latin-1"), self.method, self.path
            )
        self.started = self.finished = True
        await send_error(self.send, status, body, list(start.get("headers", [])), path=self.path)

    def watch_stream(self, message) -> dict:
        chunk = message.get("body", b"")
        anthropic = is_messages(self.path)
        if b'"error"' in chunk:
            chunk = rewrite_stream_errors(chunk, anthropic)
            self.errored = self.errored or b'"stream_interrupted"' in chunk
        self.done = self.done or (b"event: message_stop" if anthropic else b"data: [DONE]") in self.tail + chunk
        self.tail = chunk[-32:]
        if not message.get("more_body", False) and not (self.done or self.errored) and (
                anthropic or self.path.endswith("/completions")):
            log.warning("stream for %s ended before its end event; sending an error event", self.path)
            chunk += self.incomplete_event()
        return {**message, "body": chunk}

    def incomplete_event(self) -> bytes:
        return (anthropic_error_event if is_messages(self.path) else stream_error_event)(
            STREAM_INCOMPLETE, "stream_incomplete"
        )

    async def fail(self) -> bool:
        """The inner app raised: answer 500, or end a started stream with an error event."""
        if self.held is not None:
            await self.send_held()
        elif not self.started:
            await send_error(
                self.send, 500, error_body(500, default_message(500, self.method, self.path)), path=self.path
            )
        elif self.sse and not self.finished:
            await self.send({"type": "http.response.body", "more_body": False, "body": self.incomplete_event()})
        else:
            return False
        return True
