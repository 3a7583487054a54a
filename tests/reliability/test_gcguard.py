"""proxy_config.gcguard against CPython gh-148891, the segfault a soak worker died of.

The crash itself is reproduced in a subprocess (tests/reliability/hamt_repro.py): collections
that start inside `ContextVar.set` crash Python 3.11; the same work with the collections run
from the event loop by proxy_config.gcguard finishes, with every finalizer run.
"""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import weakref

import pytest

from proxy_config import gcguard
from tests.harness import REPO


def repro(mode: str, rounds: int) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tests.reliability.hamt_repro", mode, str(rounds)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(not gcguard.NEEDED, reason="CPython 3.12+ does not start collections there")
def test_collections_inside_contextvar_set_crash_python_and_collections_from_the_loop_do_not():
    crashes = [repro("automatic", 200).returncode for _ in range(3)]
    assert any(code < 0 or code in (134, 139) for code in crashes), crashes  # SIGSEGV / SIGABRT
    guarded = repro("loop", 40)
    assert guarded.returncode == 0, guarded.stderr[-2000:]
    assert "finalizers run 80000" in guarded.stdout  # every cycle was collected, from the loop


@pytest.mark.parametrize(("counts", "full_allowed", "expected"), [
    ((700, 0, 0), True, None),  # CPython collects only when the young count passes the threshold
    ((701, 0, 0), True, 0),
    ((701, 11, 0), True, 1),
    ((701, 11, 11), True, 2),
    ((701, 11, 11), False, 1),  # a full collection at most every FULL_EVERY seconds
])
def test_generation_due_follows_cpythons_trigger(counts, full_allowed, expected):
    assert gcguard.due(counts, (700, 10, 10), full_allowed) == expected


def test_the_loop_collector_turns_automatic_collection_off_and_collects_cycles_itself():
    class Node:
        pass

    async def scenario():
        collector = gcguard.LoopCollector(asyncio.get_running_loop())
        collector.start()
        try:
            enabled = gc.isenabled()
            node = Node()
            node.self = node
            ref = weakref.ref(node)
            del node
            young = [Node() for _ in range(1000)]  # push the young count past its threshold
            await asyncio.sleep(gcguard.INTERVAL * 5)
            del young
            return enabled, ref() is None, list(collector.collections)
        finally:
            collector.stop()

    enabled, collected, collections = asyncio.run(scenario())
    assert (enabled, collected) == (False, True)
    assert sum(collections) >= 1
    assert gc.isenabled()
