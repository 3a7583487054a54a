"""In-flight leases (memory and a real redis-server), the speed measurement, the report's spill
lines and the settings, without a gateway."""

from __future__ import annotations

import asyncio
import datetime
import json

import pytest

from custom_router.load import Pending
from hooks.inflight import Inflight, LocalLoadState, answer_rate
from hooks.ledger_store import COLUMNS
from proxy_config.catalog import build_policy
from gateway.report import render_table, summarize
from proxy_config.settings import RoutingSettings
from tests.observability.helpers import ledger_row
from tests.redis_server import RedisServer


def test_memory_leases_show_the_others_with_their_age_and_are_given_back():
    now = [100.0]

    async def scenario():
        inflight = Inflight(None, clock=lambda: now[0])
        first = await inflight.acquire("ollama", "a", 30.0)
        now[0] += 4
        second = await inflight.acquire("ollama", "b", 10.0)
        await inflight.release("ollama", first)
        now[0] += 1
        third = await inflight.acquire("ollama", "c", 5.0)
        return first.others, second.others, third.others, first.store

    assert asyncio.run(scenario()) == ((), (Pending(4.0, 30.0),), (Pending(1.0, 10.0),), "memory")


def test_redis_leases_are_shared_and_expire_when_their_holder_is_gone():
    server = RedisServer("inflight-units").start()
    try:
        async def scenario():
            crashed = Inflight(server.url, lease_seconds=0.5)  # a worker that dies holding a lease
            alive = Inflight(server.url, lease_seconds=0.5)
            a = await crashed.acquire("ollama", "a", 30.0)
            crashed._renewer.cancel()  # dies: no more renewals
            b = await alive.acquire("ollama", "b", 12.5)
            await asyncio.sleep(1.0)  # a expires; b is renewed every third of its lease
            c = await alive.acquire("ollama", "c", 3.0)
            await alive.release("ollama", b)
            await alive.release("ollama", c)
            return a.others, b.others, c.others, a.store

        a, b, c, store = asyncio.run(scenario())
        assert (a, store) == ((), "redis")
        assert [p.seconds for p in b] == [30.0] and 0 <= b[0].age < 0.5  # a, just taken, by Redis's clock
        assert [p.seconds for p in c] == [12.5] and 0.9 <= c[0].age < 2.0  # only b is left, taken ~1 s before
        assert server.client().zcard("gateway:inflight:ollama") == 0
    finally:
        server.stop()


def test_redis_down_counts_in_memory():
    async def scenario():
        inflight = Inflight("redis://127.0.0.1:1/0")
        lease = await inflight.acquire("ollama", "a")
        return lease.store, lease.others

    assert asyncio.run(scenario()) == ("memory", ())


def test_answer_rate_from_the_raw_body_or_the_stream_timing():
    body = json.dumps({"eval_count": 300, "eval_duration": 20_000_000_000, "done": True})
    assert answer_rate({"original_response": body}, 300, None) == 15.0
    start = datetime.datetime(2026, 1, 1)
    kwargs = {"stream": True, "completion_start_time": start}
    assert answer_rate(kwargs, 100, start + datetime.timedelta(seconds=4)) == 25.0
    assert answer_rate({}, 100, None) is None


def test_measured_speeds_feed_the_estimate():
    state = LocalLoadState(Inflight(None))
    state.record("qwen2.5:7b", 60, 20.0)
    assert state.answer_seconds("qwen2.5:7b", None) == pytest.approx(3.0)  # 60 tokens at 20 tokens/s
    assert state.answer_seconds("qwen2.5:7b", 20) == pytest.approx(1.0)  # max_tokens bounds the answer
    assert state.answer_seconds("other:7b", None) == pytest.approx(300 / 12)  # nothing measured: the defaults


def test_settings_reach_the_policy():
    policy = build_policy({"model_list": []}, RoutingSettings(local_max_wait_seconds=7.5, spill_named_local=True))
    assert (policy.local_max_wait_seconds, policy.spill_named_local) == (7.5, True)
    assert RoutingSettings().local_slots == 2


def _row(i: int, **over) -> dict:
    return dict(zip(COLUMNS, ledger_row(i, 100.0, key_hash=None, latency_ms=10.0, **over)))


def test_report_shows_the_spilled_share_and_its_cost():
    rows = [_row(0), _row(1), _row(2, route="cloud", reason="local-busy", served_model="deepseek-chat", cost_usd=2e-5,
                                    saved_usd=0.0),
            _row(3, route="cloud", reason="complexity", served_model="deepseek-chat", cost_usd=1e-5, saved_usd=0.0)]
    data = summarize(rows, 0, 200).as_dict()
    assert data["cost_comparison"]["spilled_share"] == pytest.approx(0.25)
    assert data["cost_comparison"]["spilled_cost_usd"] == pytest.approx(2e-5)
    assert "25.0% of requests, 0.000020" in render_table(data)
