"""Progress deadlines for chat requests to Ollama and DeepSeek: first token and stall, per tier.

LiteLLM's `timeout`/`stream_timeout` are idle timeouts between two reads. DeepSeek, while busy,
keeps a request open for up to 10 minutes with `: keep-alive` SSE comments (streams) or blank
lines (non-streams), each of which resets them; Ollama sends nothing for a non-streaming request
until the whole answer is generated. So this module measures progress in tokens, on the wall
clock, at the HTTP transport (proxy_config.deadline_transport installs `send_with_deadlines`):

- every chat request to a configured backend goes out as a stream (`stream: true`, and
  `stream_options.include_usage` for DeepSeek); a non-streaming one is read to its end here and
  handed back as the backend's own non-streaming JSON (proxy_config.assemble), so LiteLLM and the
  client see a normal response;
- before the response is handed on, the first real token must arrive (content, reasoning or
  thinking, a tool call, or the backend's end or error) within the tier's first-token deadline,
  counted from sending the request; after it, no gap between two such lines may exceed the
  stall deadline. Keep-alive comments, blank lines and empty deltas are not progress.

How it fails: past a deadline this raises `DeadlineMissed` (an `httpx.ReadTimeout`), which LiteLLM
maps to a Timeout (before the response) or a connection error (mid-stream).
Before the first token (and anywhere in a non-streaming request) nothing has reached the client,
so the router falls back to the other tier; in a stream that has sent tokens, the proxy ends the
stream with the `stream_interrupted` error event (gateway.errors) and no `[DONE]`. A request
this module does not recognise (another URL, a body that is not JSON) passes through untouched,
with LiteLLM's idle timeouts as before. A stream that ends without the backend's end marker is
returned as it came (LiteLLM and hooks.streams judge it); a non-streaming one raises
`httpx.RemoteProtocolError` (LiteLLM: connection error, so the other tier serves it).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import httpx

from proxy_config.assemble import Assembler, StreamBroken, assembler_for, is_data, is_progress

log = logging.getLogger("gateway.deadlines")

Send = Callable[[httpx.Request], Awaitable[httpx.Response]]
CHAT_PATHS = {"/api/chat": "ollama", "/chat/completions": "openai"}  # path suffix -> wire format
DROPPED_HEADERS = ("content-length", "transfer-encoding", "content-encoding", "content-type")


@dataclass(frozen=True)
class TierDeadlines:
    tier: str                 # "local" or "cloud": names the settings in messages
    backend: str              # "Ollama" or "DeepSeek"
    base_url: str
    first_token: float        # seconds from sending the request to the first token
    stall: float              # longest gap between two tokens, seconds

    def matches(self, url: httpx.URL) -> str | None:
        """The wire format when `url` is this backend's chat endpoint, else None."""
        base = httpx.URL(self.base_url)
        if (url.scheme, url.host, url.port) != (base.scheme, base.host, base.port):
            return None
        if not url.path.startswith(base.path.rstrip("/") + "/"):
            return None
        return next((fmt for suffix, fmt in CHAT_PATHS.items() if url.path.endswith(suffix)), None)


def tiers_from_settings(settings) -> tuple[TierDeadlines, ...]:
    routing = settings.routing
    return (
        TierDeadlines("local", "Ollama", settings.ollama_url, routing.local_first_token_seconds,
                      routing.local_stall_seconds),
        TierDeadlines("cloud", "DeepSeek", settings.deepseek_url, routing.cloud_first_token_seconds,
                      routing.cloud_stall_seconds),
    )


class DeadlineMissed(httpx.ReadTimeout):
    """No token in time; the message names the backend, the deadline and its setting."""


class Deadline:
    """The next moment by which a token must have arrived; `missed` builds the error."""

    def __init__(self, tier: TierDeadlines, request: httpx.Request) -> None:
        self.tier, self.request = tier, request
        self.at = time.monotonic() + tier.first_token
        self.first_seen = False

    def progressed(self) -> None:
        self.first_seen = True
        self.at = time.monotonic() + self.tier.stall

    def missed(self) -> DeadlineMissed:
        tier = self.tier
        if self.first_seen:
            what = (f"{tier.backend} sent no token for {tier.stall:g} s (stall deadline, "
                    f"gateway_settings.{tier.tier}_stall_seconds)")
        else:
            what = (f"{tier.backend} sent no token within {tier.first_token:g} s of the request (first-token "
                    f"deadline, gateway_settings.{tier.tier}_first_token_seconds)")
        log.warning("deadline: %s; %s", what, self.request.url.path)
        return DeadlineMissed(what, request=self.request)

    async def wait(self, awaitable):
        try:
            async with asyncio.timeout_at(self._loop_time()):
                return await awaitable
        except TimeoutError:
            raise self.missed() from None

    def _loop_time(self) -> float:
        return asyncio.get_running_loop().time() + max(0.0, self.at - time.monotonic())


def as_stream_request(request: httpx.Request, body: dict, fmt: str) -> httpx.Request:
    """The same request, asking for a stream and for an uncompressed reply (lines are read here)."""
    body = {**body, "stream": True}
    if fmt == "openai":
        body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    headers = [(k, v) for k, v in request.headers.raw
               if k.decode().lower() not in ("content-length", "accept-encoding")]
    headers.append((b"accept-encoding", b"identity"))
    return httpx.Request(request.method, request.url, headers=headers, content=json.dumps(body).encode(),
                         extensions=request.extensions)


async def send_with_deadlines(send: Send, request: httpx.Request, tiers: tuple[TierDeadlines, ...]) -> httpx.Response:
    """`send(request)` under the first-token and stall deadlines of the tier `request` goes to."""
    tier, fmt = next(((t, f) for t in tiers if (f := t.matches(request.url))), (None, None))
    if tier is None or request.method != "POST":
        return await send(request)
    try:
        body = json.loads(await request.aread())
    except ValueError:
        return await send(request)
    if not isinstance(body, dict):
        return await send(request)
    wants_stream = body.get("stream", fmt == "ollama") is True  # Ollama streams unless told not to
    deadline = Deadline(tier, request)
    response = await deadline.wait(send(as_stream_request(request, body, fmt)))
    if response.status_code != 200:
        return response  # an error body: LiteLLM reads and maps it as before
    reader = LineReader(response, deadline)
    try:
        if not wants_stream and response.headers.get("content-type", "").startswith("application/json"):
            await deadline.wait(response.aread())  # the backend answered in one piece after all
            return response
        if wants_stream:
            return await first_token_then_stream(response, reader, fmt)
        return await assembled(response, reader, assembler_for(fmt))
    except BaseException:
        await response.aclose()
        raise


class LineReader:
    """The backend's body, line by line (with their endings kept), each read under the deadline."""

    def __init__(self, response: httpx.Response, deadline: Deadline) -> None:
        self.chunks = response.aiter_raw()
        self.deadline = deadline
        self.carry = b""
        self.ended = False

    async def lines(self) -> AsyncIterator[bytes]:
        while not self.ended:
            try:
                chunk = await self.deadline.wait(anext(self.chunks))
            except StopAsyncIteration:
                self.ended = True
                if self.carry:
                    yield self.carry
                    self.carry = b""
                return
            *complete, self.carry = (self.carry + chunk).split(b"\n")
            for line in complete:
                yield line + b"\n"


async def first_token_then_stream(response: httpx.Response, reader: LineReader, fmt: str) -> httpx.Response:
    """Wait for the first token (or the end), then hand on the stream: what was read, then the rest."""
    head = []
    lines = reader.lines()
    async for line in lines:
        head.append(line)
        if is_progress(line, fmt):
            reader.deadline.progressed()
            break

    async def body() -> AsyncIterator[bytes]:
        if head:
            yield b"".join(head)
        reader.deadline.progressed()  # the stall clock runs while this side waits for the backend
        async for line in lines:
            yield line
            if is_data(line):
                reader.deadline.progressed()

    stream = ReplayStream(body(), response)
    return httpx.Response(response.status_code, headers=response.headers, stream=stream,
                          request=response.request, extensions=response.extensions)


async def assembled(response: httpx.Response, reader: LineReader, assembler: Assembler) -> httpx.Response:
    """Read the whole stream under the deadlines and answer with the non-streaming JSON it amounts to."""
    try:
        async for line in reader.lines():
            if assembler.add(line):
                reader.deadline.progressed()
        status, body = assembler.result()
    except StreamBroken as exc:
        raise httpx.RemoteProtocolError(str(exc), request=response.request) from None
    finally:
        await response.aclose()
    headers = [(k, v) for k, v in response.headers.items() if k.lower() not in DROPPED_HEADERS]
    return httpx.Response(status, headers=headers, json=body, request=response.request)


class ReplayStream(httpx.AsyncByteStream):
    """The lines already read, then the rest; closing it closes the backend's response."""

    def __init__(self, lines: AsyncIterator[bytes], response: httpx.Response) -> None:
        self.lines, self.response = lines, response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for line in self.lines:
            yield line

    async def aclose(self) -> None:
        await self.response.aclose()
