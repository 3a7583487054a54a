"""Runner slots of the Ollama emulator: a bounded set of generations plus a queue.

Models Ollama's scheduler (server/sched.go): a runner serves
`OLLAMA_NUM_PARALLEL` requests at once (envconfig/config.go, default 1; the
Ansible role sets 2; the emulator defaults to 4 to keep tests roomy).  Further
requests wait in a queue of at most `OLLAMA_MAX_QUEUE` (default 512) and are
sent no bytes while they wait; when the queue is full the request fails at
once with `ErrMaxQueue` ("server busy, please try again.  maximum pending
requests exceeded", sched.go), which routes.go handleScheduleError answers
with 503.  Ollama runs the scheduler with the request's context, so a client
that closes its connection leaves the queue, and a running completion stops
when its connection closes (llm/server.go: the completion request is bound to
the HTTP request's context).

Simplification: one pool for the whole emulator, as on a CPU host that holds
one model in memory at a time; real Ollama has a pool per loaded model.

How it fails: `acquire` raises `QueueFull` when the queue is full and
`ClientGone` when the client disconnects while waiting; either way no slot is
held.  The caller must `release` exactly once per successful `acquire`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Awaitable, Callable

from starlette.requests import Request

from emulators._common import Stats

__all__ = ["ClientGone", "QueueFull", "Slots", "until_disconnect"]

POLL = 0.02  # seconds between disconnect checks while waiting


class QueueFull(Exception):
    """More than max_queue requests are waiting (Ollama's ErrMaxQueue)."""


class ClientGone(Exception):
    """The client closed its connection while its request waited or ran."""


async def until_disconnect(request: Request, awaitable: Awaitable[Any]) -> Any:
    """Await `awaitable`; cancel it and raise ClientGone if the client goes away first."""
    task = asyncio.ensure_future(awaitable)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=POLL)
            if done:
                return task.result()
            if await request.is_disconnected():
                task.cancel()
                raise ClientGone()
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


class Slots:
    """`limit()` concurrent holders, at most `max_queue()` waiters (FIFO)."""

    def __init__(self, stats: Stats, limit: Callable[[], int], max_queue: Callable[[], int]):
        self.stats, self.limit, self.max_queue = stats, limit, max_queue
        self.waiters: deque[asyncio.Future] = deque()

    def _take(self) -> None:
        self.stats.running += 1
        self.stats.max_running = max(self.stats.max_running, self.stats.running)

    async def acquire(self) -> None:
        if self.stats.running < self.limit() and not self.waiters:
            self._take()
            return
        if len(self.waiters) >= self.max_queue():
            raise QueueFull()
        future = asyncio.get_running_loop().create_future()
        self.waiters.append(future)
        self.stats.queued = len(self.waiters)
        self.stats.max_queued = max(self.stats.max_queued, self.stats.queued)
        try:
            await future
        except asyncio.CancelledError:
            if future in self.waiters:
                self.waiters.remove(future)
                self.stats.queued = len(self.waiters)
            elif future.done() and not future.cancelled():
                self.release()          # the slot was handed over as we were cancelled
            raise

    def release(self) -> None:
        self.stats.running -= 1
        self.wake()

    def wake(self) -> None:
        """Hand free slots to the oldest waiters (also after `limit` grows)."""
        while self.waiters and self.stats.running < self.limit():
            future = self.waiters.popleft()
            if not future.done():
                self._take()
                future.set_result(None)
        self.stats.queued = len(self.waiters)
