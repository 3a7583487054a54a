"""Unit tests of the pure cost rules, the ledger's additive migration and the per-1,000 table."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone

import pytest

from hooks.cost_rules import (BadCacheHeader, cache_key, cache_params, cache_plan, cloud_spend_by_key, month_of,
                              next_reset, reset_text, to_units)
from hooks.ledger_store import COLUMNS, TABLE, SqliteStore
from gateway.report import Totals, per_1000

BODY = {"model": "auto", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}


def plan(headers=None, ttl=300, **body):
    return cache_plan({**BODY, **body}, headers or {}, ttl, 0.0)


def test_the_cache_is_off_at_ttl_zero():
    assert plan(ttl=0) is None


def test_cache_control_no_cache_skips_reading_and_no_store_skips_writing():
    assert (plan().read, plan().write) == (True, True)
    assert (plan({"cache-control": "no-cache"}).read, plan({"cache-control": "no-cache"}).write) == (False, True)
    assert (plan({"cache-control": "no-store"}).read, plan({"cache-control": "no-store"}).write) == (True, False)
    both = plan({"cache-control": "No-Cache, no-store, max-age=0"})
    assert (both.read, both.write) == (False, False)


def test_cache_ttl_header_only_shortens_and_zero_means_do_not_store():
    assert plan({"x-gateway-cache-ttl": "60"}).ttl == 60
    assert plan({"x-gateway-cache-ttl": "9999"}).ttl == 300
    assert plan({"x-gateway-cache-ttl": "0"}).write is False
    with pytest.raises(BadCacheHeader, match="whole number of seconds"):
        plan({"x-gateway-cache-ttl": "-5"})


def test_sampled_requests_bypass_unless_forced():
    assert plan(temperature=0.9).bypass and not plan(temperature=0.9).write
    assert plan(n=2).bypass
    absent = cache_plan({"messages": BODY["messages"]}, {}, 300, 0.0)
    assert absent.bypass  # no temperature: the default 1.0
    assert cache_plan({"messages": BODY["messages"]}, {}, 300, 1.0).read  # a limit of 1.0 caches the default
    forced = plan({"x-gateway-cache": "force"}, temperature=0.9)
    assert (forced.read, forced.write) == (True, True)


def test_the_key_depends_on_scope_model_group_and_answer_changing_params_only():
    params = cache_params({**BODY, "stream": True, "stream_options": {"include_usage": True}, "user": "u1",
                           "metadata": {"x": 1}, "litellm_call_id": "abc", "_litellm_strip_stream_usage": True})
    assert params == {"messages": BODY["messages"], "temperature": 0}
    key = cache_key("k1", "qwen2.5:7b", params)
    assert key == cache_key("k1", "qwen2.5:7b", cache_params(BODY))
    assert key != cache_key("k2", "qwen2.5:7b", params)  # per-key scope
    assert key != cache_key("k1", "deepseek-chat", params)  # a local request never reads a cloud entry
    assert key != cache_key("k1", "qwen2.5:7b", {**params, "max_tokens": 5})
    assert key != cache_key("k1", "qwen2.5:7b", {**params, "seed": 1})


def test_budget_month_and_reset_are_utc_calendar_months():
    dec = datetime(2026, 12, 31, 23, 59, tzinfo=timezone.utc).timestamp()
    assert month_of(dec) == "2026-12"
    assert next_reset(dec) == datetime(2027, 1, 1, tzinfo=timezone.utc)
    assert reset_text(datetime(2026, 2, 3, tzinfo=timezone.utc).timestamp()) == "2026-03-01 00:00 UTC"
    assert to_units(0.00000028) == 280 and to_units(0.05) == 50_000_000


def test_cloud_spend_counts_cloud_rows_per_key():
    rows = [{"route": "cloud", "key_hash": "sha256:a", "cost_usd": 0.02}, {"route": "cloud", "key_hash": "sha256:a",
            "cost_usd": 0.01}, {"route": "local", "key_hash": "sha256:a", "cost_usd": 0.5},
            {"route": "cloud", "key_hash": None, "cost_usd": 1.0}]
    assert cloud_spend_by_key(rows) == {"sha256:a": pytest.approx(0.03)}


def test_an_old_sqlite_ledger_gains_the_cache_columns_and_keeps_its_rows(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    old = [c for c in COLUMNS if c not in ("cache", "cache_saved_usd")]
    conn = sqlite3.connect(path)
    conn.execute(f"CREATE TABLE {TABLE} ({', '.join('request_id TEXT PRIMARY KEY' if c == 'request_id' else c for c in old)})")
    conn.execute(f"INSERT INTO {TABLE} (request_id, ts, route, status) VALUES ('old', 1.0, 'local', 200)")
    conn.commit()
    conn.close()
    store = SqliteStore(path)
    writer_conn = store.connect()  # migrates
    store.insert(writer_conn, [tuple({"request_id": "new", "ts": 2.0, "cache": "hit", "cache_saved_usd": 0.5}.get(c)
                                     for c in COLUMNS)])
    store.connect().close()  # a second worker connecting finds the columns present
    rows = list(store.rows_since(store.open_for_reading(), 0.0))
    assert [(r["request_id"], r["cache"], r["cache_saved_usd"]) for r in rows] == [("old", None, None), ("new", "hit", 0.5)]


def test_per_1000_table_scales_observed_averages_and_keeps_cache_savings_apart():
    simple = Totals(requests=4, cost_usd=0.0, saved_usd=0.004, cache_saved_usd=0.0)
    complex_ = Totals(requests=2, cost_usd=0.02, saved_usd=0.0, cache_saved_usd=0.02)
    rows = {r["requests"]: r for r in per_1000({"simple": simple, "complex": complex_})}
    assert rows["1,000 simple"]["cloud_only_usd"] == pytest.approx(1.0)
    assert rows["1,000 simple"]["with_gateway_usd"] == 0.0
    assert rows["1,000 complex"] == {"requests": "1,000 complex", "observed": 2, "cloud_only_usd": pytest.approx(20.0),
                                     "with_gateway_usd": pytest.approx(10.0), "local_saved_usd": 0.0,
                                     "cache_saved_usd": pytest.approx(10.0)}
    mixed = rows["1,000 mixed (67% simple, as observed)"]
    assert mixed["cloud_only_usd"] == pytest.approx(1000 * 0.044 / 6)


def settings(env: dict, **overrides):
    from proxy_config.settings import load_settings
    from tests.harness import MASTER_KEY, REPO

    return load_settings({"LITELLM_MASTER_KEY": MASTER_KEY, **env}, env_file=None, config_path=REPO / "config.yaml",
                         **overrides)


def test_cost_settings_come_from_the_environment_and_default_to_off():
    from proxy_config.settings import SettingsError

    defaults = settings({})
    assert (defaults.routing.response_cache_ttl, defaults.routing.cache_scope, defaults.key_cloud_budget_usd) == (0, "key", None)
    on = settings({"RESPONSE_CACHE_TTL": "600", "KEY_CLOUD_BUDGET_USD": "2.5"})
    assert (on.routing.response_cache_ttl, on.key_cloud_budget_usd) == (600, 2.5)
    with pytest.raises(SettingsError, match="KEY_CLOUD_BUDGET_USD"):
        settings({"KEY_CLOUD_BUDGET_USD": "-1"})
    with pytest.raises(SettingsError, match="response_cache_ttl"):
        settings({"RESPONSE_CACHE_TTL": "soon"})


def test_check_warns_that_the_cache_needs_redis():
    from proxy_config.check import check_config

    problems = check_config(settings({"RESPONSE_CACHE_TTL": "60"}))
    assert any(p.level == "warning" and "REDIS_URL" in p.message and "response cache" in p.message for p in problems)
    assert not any("response cache" in p.message for p in check_config(settings({"RESPONSE_CACHE_TTL": "60",
                                                                                  "REDIS_URL": "redis://127.0.0.1:1/0"})))


def test_key_budgets_come_from_the_keys_config_or_the_default(tmp_path):
    from proxy_config.keys import load_keys, set_budget

    keys_file = tmp_path / "keys.yaml"
    keys_file.write_text("keys:\n  - name: alice\n    key: sk-alice-1\n    cloud_budget_usd: 3\n")
    s = settings({"API_KEYS": "sk-bob-2", "KEYS_FILE": str(keys_file), "KEY_CLOUD_BUDGET_USD": "1"})
    table = load_keys(s)
    assert sorted((k.name.startswith("key-"), k.budget) for k in table.keys.values()) == [(False, 3.0), (True, 1.0)]
    bob = next(k for k in table.keys.values() if k.name.startswith("key-"))
    set_budget(keys_file, bob, 0.25)
    assert {k.digest: k.budget for k in load_keys(s).keys.values()}[bob.digest] == 0.25
    assert "sk-bob-2" not in keys_file.read_text()  # stored by sha256 only
