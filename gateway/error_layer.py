"""The ASGI layer that makes every error a client sees an OpenAI-shaped one (gateway.errors has the
shapes).

`ErrorLayer` is the ASGI middleware in front of LiteLLM (behind gateway.gate, so every
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
import gzip
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from gateway.errors import (anthropic_error_event, clean_message, default_message, error_body, is_messages,
                            rewrite_stream_errors, send_error, shaped_error, stream_error_event)
from hooks import context
from hooks.ledger import INFERENCE_SUFFIXES, is_inference
from proxy_config.chat_checks import (RequestRejected, check_chat, check_client_fields, check_json, check_n,
                                      check_served_model)

log = logging.getLogger("gateway.errors")  # the name operators know from before the split

BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
OPENAI_JSON_SUFFIXES = (*INFERENCE_SUFFIXES, "/moderations")  # the routes whose body must be OpenAI JSON
MAX_ERROR_BODY = 256 * 1024  # an error body larger than this is cut before parsing
STREAM_INCOMPLETE = "The stream ended before the backend finished, so the response is incomplete. Retry the request."
LINGER_SECONDS = 30.0  # nginx's lingering_time: how long an oversized body is read before the 413 and the close


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
