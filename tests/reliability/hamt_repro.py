"""CPython gh-148891 on purpose: `python -m tests.reliability.hamt_repro automatic|loop [rounds]`.

Each `ContextVar.set` of `main` allocates HAMT nodes; cyclic garbage with a finalizer that sets
a context variable (as LiteLLM's closed coroutines do in `finally`) is always waiting. With
`automatic`, collections start inside those allocations (threshold 1): on Python < 3.12 the
finalizer frees the HAMT the outer `set` is copying and the process crashes (SIGSEGV or a
malloc abort). With `loop`, proxy_config.gcguard's collector runs the collections from an
asyncio loop callback instead; the script prints how many finalizers ran and exits 0.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import sys

from proxy_config import gcguard

var = contextvars.ContextVar("var")
pads = [contextvars.ContextVar(f"pad{i}") for i in range(64)]
finalized = 0


class Finalizer:
    def __del__(self):
        global finalized
        finalized += 1
        var.set([object() for _ in range(3)])  # a context-variable set from inside a collection
        junk = [bytearray(48) for _ in range(200)]  # reuse the memory a premature free gave back
        for pad in pads[:16]:
            pad.set(junk)


def garbage() -> None:
    a, b = Finalizer(), Finalizer()
    a.other, b.other = b, a  # only the cyclic collector frees these


def sets(n: int) -> None:
    for i in range(n):
        garbage()
        pads[i % 64].set([i])  # allocates HAMT nodes: where an automatic collection would start


async def on_the_loop(rounds: int) -> gcguard.LoopCollector:
    collector = gcguard.LoopCollector(asyncio.get_running_loop())
    collector.start()
    try:
        for _ in range(rounds):
            sets(1000)
            await asyncio.sleep(gcguard.INTERVAL * 1.5)  # let the collector's callback run
    finally:
        collector.stop()
    return collector


def main(mode: str, rounds: int = 200) -> None:
    for pad in pads:
        pad.set(object())  # a multi-level HAMT
    gc.set_threshold(1)
    if mode == "automatic":
        for _ in range(rounds):
            sets(1000)
    else:
        collector = asyncio.run(on_the_loop(rounds))
        print(f"collections by generation {collector.collections}")
    print(f"finalizers run {finalized}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 200)
