"""Fault-aware responses of the emulators: what a fault does to one answer.

Owns `early_fault` (HTTP errors, hang, an error status before the first
byte), `run_stream` (streaming faults, pacing between chunks, keep-alives)
and `nonstream_response` (a complete JSON answer, bent by the fault), plus
the connection-level helpers `hang` and `abort_connection`.

How it fails: `abort_connection` raises ConnectionAbortedError when the server
is not uvicorn (no transport to close), which makes the server drop the
connection itself; everything else only sleeps, yields or answers.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from emulators._common import Fault

__all__ = ["StreamPlan", "abort_connection", "early_fault", "hang", "nonstream_response",
           "run_stream"]

KEEPALIVE_INTERVAL = 0.5


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
                      http_errors: dict[str, tuple[int, Any]],
                      status_body: Any = None) -> Response | None:
    """Answer for faults that act before any generation; None otherwise.

    `error_status_before_first_token` answers `fault.status` with `status_body`:
    what a server sends when it fails before writing its first byte.
    """
    if fault.mode in http_errors:
        status, body = http_errors[fault.mode]
        return JSONResponse(body, status_code=status)
    if fault.mode == "error_status_before_first_token":
        return JSONResponse(status_body, status_code=fault.status)
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
    keepalive: bytes = b""     # filler while "queued" (keepalive faults)


async def _fillers(seconds: float, filler: bytes, interval: float = KEEPALIVE_INTERVAL,
                   forever: bool = False) -> AsyncIterator[bytes]:
    """`filler` at 0, interval, 2 x interval, ... before `seconds` (or until cancelled), then
    silence until `seconds` have passed.  Counted, not polled: the number of fillers
    does not depend on how punctually the event loop wakes up."""
    start, sent = time.monotonic(), 0
    while forever or sent * interval < seconds:
        yield filler
        sent += 1
        wake = start + (sent * interval if forever else min(sent * interval, seconds))
        await asyncio.sleep(max(0.0, wake - time.monotonic()))


def _keepalives(fault: Fault, filler: bytes) -> AsyncIterator[bytes] | None:
    """The keep-alive fillers of the keepalive/busy_keepalive faults, else None."""
    if fault.mode == "keepalive":
        return _fillers(fault.delay, filler)
    if fault.mode == "busy_keepalive":
        seconds = fault.delay if fault.seconds is None else fault.seconds
        return _fillers(seconds, filler, fault.interval, forever=seconds == 0)
    return None


async def run_stream(request: Request, plan: StreamPlan, fault: Fault,
                     chunk_delay: float = 0.0) -> AsyncIterator[bytes]:
    """Yield the planned stream, bent by the fault, `chunk_delay` s between chunks."""
    mode = fault.mode
    if mode in ("error_before_first_token", "malformed"):
        yield plan.error if mode == "error_before_first_token" else plan.malformed
        return
    if mode == "slow":
        await asyncio.sleep(fault.delay)
    fillers = _keepalives(fault, plan.keepalive)
    if fillers is not None:
        async for filler in fillers:
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
    fillers = _keepalives(fault, filler)
    if fillers is not None:
        async def blanks_then_body() -> AsyncIterator[bytes]:
            async for blank in fillers:
                yield blank
            yield payload
        return StreamingResponse(blanks_then_body(), media_type="application/json")
    return Response(payload, media_type="application/json")
