"""Garbage collection from the event loop, not from inside allocations (Python before 3.12).

CPython before 3.12 has a use-after-free, python/cpython#148891: `ContextVar.set` allocates
nodes of the context's HAMT, an allocation can start a garbage collection, and a finalizer run
by that collection can set a context variable itself, which frees the HAMT the outer `set` is
still copying. The worker dies with SIGSEGV in `hamt_node_bitmap_clone`. LiteLLM sets and resets
context variables on every request (litellm/_internal_context.py, whose `_restore` notes that
the collector closes its coroutines from other contexts), and the gateway hit the crash under
load: 2 of about 12 soak runs lost a worker and the 7-8 requests it held, the second time with
the Python stack in LiteLLM's `service_target`.
tests/reliability/test_gcguard.py reproduces the crash and shows that this module prevents it.

`install(loop)` freezes what start-up allocated (`gc.freeze()`: a full collection then scans
only what came later, instead of ~0.4 s over LiteLLM's ~700k start-up objects), turns automatic
collection off, and runs the collections from a loop callback every `INTERVAL` seconds instead,
where no `ContextVar.set` can be on the stack: the young generation when its count passes the
threshold (CPython's own trigger), the middle one as CPython would after that, a full
collection at most every `FULL_EVERY` seconds. On Python 3.12 and later it does nothing.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import time

log = logging.getLogger("gateway.gcguard")

INTERVAL = 0.01  # seconds between checks; a young collection takes well under a millisecond
FULL_EVERY = 10.0  # seconds between full collections at most
NEEDED = sys.version_info < (3, 12)


def due(counts: tuple[int, int, int], thresholds: tuple[int, int, int], full_allowed: bool) -> int | None:
    """The generation to collect now, like CPython's allocation trigger, or None."""
    if counts[0] <= thresholds[0]:
        return None
    if full_allowed and counts[2] > thresholds[2]:
        return 2
    return 1 if counts[1] > thresholds[1] else 0


class LoopCollector:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.last_full = time.monotonic()
        self.collections = [0, 0, 0]
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        gc.collect()
        gc.freeze()
        gc.disable()
        self._handle = self.loop.call_later(INTERVAL, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        gc.unfreeze()
        gc.enable()

    def _tick(self) -> None:
        try:
            now = time.monotonic()
            generation = due(gc.get_count(), gc.get_threshold(), now - self.last_full >= FULL_EVERY)
            if generation is not None:
                gc.collect(generation)
                self.collections[generation] += 1
                if generation == 2:
                    self.last_full = now
        finally:
            self._handle = self.loop.call_later(INTERVAL, self._tick)


def install(loop: asyncio.AbstractEventLoop) -> LoopCollector | None:
    """Collect from `loop` from now on (Python < 3.12); None when not needed."""
    if not NEEDED:
        return None
    collector = LoopCollector(loop)
    collector.start()
    log.info("garbage collection runs from the event loop (CPython gh-148891, Python %d.%d)", *sys.version_info[:2])
    return collector
