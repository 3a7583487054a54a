"""Unit tests with plain data: costs and savings, ledger records, the writer on a full or
unwritable disk, report aggregation, /health statuses, stream usage and JSON log lines."""

from __future__ import annotations

import asyncio
import json
import logging
import logging.config
import sqlite3
from types import SimpleNamespace

import pytest

from custom_router.policy import Decision, Reason, Route
from hooks import context
from hooks.backends import health_report
from hooks.context import RequestContext, Usage
from custom_router.policy import fallback_tiers
from hooks.ledger import Price, Prices, ResponseFacts, build_record, wait_for_usage
from hooks.ledger_store import COLUMNS, LedgerWriter, SqliteStore
from gateway.logs import JsonLineFormatter, Redactor, RequestIdFilter, uvicorn_log_config
from gateway.report import parse_since, render_csv, summarize
from tests.observability.helpers import ledger_row

CHAT = Price("cloud", input=0.28e-6, output=0.42e-6, cache_read=0.028e-6)
PRICES = Prices({"qwen2.5:7b": Price("local"), "deepseek-chat": CHAT, "deepseek-reasoner": CHAT}, "deepseek-chat",
                local_per_1k=0.0001)


def test_local_response_saves_the_cloud_default_price_minus_the_local_cost():
    cost, saved = PRICES.costs("qwen2.5:7b", Usage(prompt=1000, completion=500))
    assert cost == pytest.approx(1500 * 0.0001 / 1000)
    assert saved == pytest.approx(1000 * 0.28e-6 + 500 * 0.42e-6 - cost)


def test_cloud_response_costs_its_price_with_cached_prompt_tokens_at_the_cache_price_and_saves_nothing():
    assert PRICES.costs("deepseek-chat", Usage(prompt=100, completion=10, cached=40)) == pytest.approx(
        (60 * 0.28e-6 + 40 * 0.028e-6 + 10 * 0.42e-6, 0.0))
    assert PRICES.costs(None, Usage(prompt=5, completion=5)) == (0.0, 0.0)


def test_local_cost_above_the_cloud_price_gives_negative_savings():
    pricey = Prices(PRICES.models, "deepseek-chat", local_per_1k=1.0)
    assert pricey.costs("qwen2.5:7b", Usage(prompt=10, completion=10))[1] < 0


def _ctx(**fields) -> RequestContext:
    ctx = RequestContext(**fields)
    ctx.started = 100.0
    return ctx


def test_build_record_of_a_served_stream_has_tokens_cost_and_ttft():
    ctx = _ctx(key_hash="sha256:0011aabb", requested_model="auto", served_model="qwen2.5:7b",
               usage=Usage(prompt=7, completion=11))
    facts = ResponseFacts(status=200, route="local", reason="simple", stream=True, first_chunk=100.25, finished=101.0)
    record = build_record(ctx, facts, PRICES, now=101.0)
    assert (record.route, record.served_model, record.prompt_tokens, record.completion_tokens) == ("local", "qwen2.5:7b", 7, 11)
    assert (record.latency_ms, record.ttft_ms, record.error_type) == (1000.0, 250.0, None)
    assert record.saved_usd == pytest.approx(7 * 0.28e-6 + 11 * 0.42e-6 - 18 * 0.0001 / 1000)
    assert len(record.row()) == len(COLUMNS)


def test_build_record_of_a_failure_has_no_tokens_and_an_error_type():
    ctx = _ctx(decision=Decision(Route.NONE, None, Reason.NO_BACKEND))
    record = build_record(ctx, ResponseFacts(status=503, route="none", reason="no-backend"), PRICES, now=100.5)
    assert (record.served_model, record.cost_usd, record.error_type, record.ttft_ms) == (None, 0.0, "no-backend", None)
    auth = build_record(_ctx(), ResponseFacts(status=401), PRICES, now=100.1)
    assert auth.error_type == "auth"


def test_a_stream_that_carried_an_error_event_is_recorded_as_an_error_with_its_200(monkeypatch):
    import hooks.ledger

    finished = []

    async def fake_finish(ctx, facts):
        finished.append(facts)

    monkeypatch.setattr(hooks.ledger, "finish", fake_finish)

    async def stream(*events: bytes) -> ResponseFacts:
        tracker = hooks.ledger.ResponseTracker(_ctx())
        tracker.sent({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        for i, event in enumerate(events):
            tracker.sent({"type": "http.response.body", "body": event, "more_body": i < len(events) - 1})
        await asyncio.sleep(0)
        return finished[-1]

    chunk = b'data: {"choices": [{"delta": {"content": "hi"}}]}\n\n'
    broken = asyncio.run(stream(chunk, b'data: {"error": {"message": "cut", "code": "stream_interrupted"}}\n\n'))
    whole = asyncio.run(stream(chunk, b"data: [DONE]\n\n"))
    assert (broken.stream_error, whole.stream_error) == (True, False)
    record = build_record(_ctx(), broken, PRICES, now=101.0)
    assert (record.status, record.error_type) == (200, "stream-error")
    assert build_record(_ctx(), whole, PRICES, now=101.0).error_type is None


def test_fallback_tiers_come_from_the_reason_or_the_route_when_both_failed():
    assert fallback_tiers("cloud", "local-error-fallback") == ("local", "cloud")
    assert fallback_tiers("local", "cloud-error-fallback") == ("cloud", "local")
    assert fallback_tiers("local", "simple") == ("local", "cloud")


def _row(i: int, ts: float = 1000.0, **over) -> tuple:
    return ledger_row(i, ts, **over)


def test_writer_puts_records_in_sqlite_that_the_report_can_read(tmp_path):
    store = SqliteStore(tmp_path / "data" / "ledger.sqlite3")
    writer = LedgerWriter(store, on_error=lambda kind, n: pytest.fail(f"unexpected {kind}"))
    for i in range(3):
        writer.put(_row(i, ts=1000.0 + i))
    writer.close()
    conn = store.open_for_reading()
    rows = list(store.rows_since(conn, 1001.0))
    conn.close()
    assert [r["request_id"] for r in rows] == ["r1", "r2"]
    assert writer.written == 3


def test_writer_on_a_full_disk_counts_and_logs_the_lost_records_and_keeps_going(tmp_path, caplog):
    errors = []
    store = SqliteStore(tmp_path / "ledger.sqlite3", pragmas=["PRAGMA max_page_count=4"])  # real SQLITE_FULL
    writer = LedgerWriter(store, on_error=lambda kind, n: errors.append((kind, n)))
    with caplog.at_level(logging.ERROR, logger="gateway.ledger"):
        writer.put(_row(0))
        writer.close()
        writer = LedgerWriter(store, on_error=lambda kind, n: errors.append((kind, n)))
        for i in range(1, 201):
            writer.put(_row(i, error_type="x" * 40))
        writer.close()
    assert sum(n for kind, n in errors if kind == "write") == 200
    assert "database or disk is full" in caplog.text and "request record(s) lost" in caplog.text
    with sqlite3.connect(tmp_path / "ledger.sqlite3") as conn:
        assert conn.execute("SELECT count(*) FROM gateway_requests").fetchone() == (1,)


def test_writer_under_a_file_cannot_create_its_directory_even_as_root(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    errors = []
    writer = LedgerWriter(SqliteStore(blocker / "data" / "ledger.sqlite3"), on_error=lambda k, n: errors.append((k, n)))
    writer.put(_row(0))
    writer.put(_row(1))
    writer.close()
    assert sum(n for _, n in errors) == 2


def test_summary_aggregates_routes_models_keys_fallbacks_and_timeline():
    rows = [dict(zip(COLUMNS, r)) for r in (
        _row(0, ts=3600.0), _row(1, ts=3700.0),
        _row(2, ts=7300.0, route="cloud", reason="local-error-fallback", served_model="deepseek-chat",
             fallback_cause="server-error", cost_usd=5e-6, saved_usd=0.0),
        _row(3, ts=7400.0, route="none", reason="not-routed", served_model=None, status=400, prompt_tokens=0,
             completion_tokens=0, saved_usd=0.0, key_hash=None),
        _row(4, ts=10.0),  # before the period
        _row(5, ts=7500.0, error_type="stream-error", stream=1),  # a 200 stream that broke: an error, not served
    )]
    data = summarize(rows, since=3600.0, until=8000.0, bucket_seconds=3600)
    assert data.as_dict()["totals"]["requests"] == 5
    assert data.as_dict()["totals"]["errors"] == 2
    assert data.as_dict()["fallbacks"] == [{"from_tier": "local", "to_tier": "cloud", "cause": "server-error", "requests": 1}]
    assert {k: v["requests"] for k, v in data.as_dict()["by_key"].items()} == {"sha256:00000000": 4, "(no key)": 1}
    assert data.timeline[3600]["local"] == 2 and data.timeline[7200]["cloud"] == 1
    comparison = data.as_dict()["cost_comparison"]
    assert comparison["cloud_only_usd"] == pytest.approx(5e-6 + 3e-6)
    assert comparison["local_share"] == pytest.approx(2 / 3)
    assert render_csv(data.as_dict()).splitlines()[1] == "total,all,5,2,28,44,0,5e-06,3e-06"


@pytest.mark.parametrize(("text", "seconds"), [("30m", 1800), ("24h", 86400), ("7d", 604800), (" 2w ", 1209600)])
def test_since_accepts_minutes_hours_days_weeks(text, seconds):
    assert parse_since(text) == seconds


@pytest.mark.parametrize(
    ("ollama_up", "key_set", "reachable", "status", "code", "cloud"),
    [(True, True, True, "healthy", 200, "connected"), (False, True, True, "degraded", 200, "connected"),
     (True, False, True, "degraded", 200, "no_api_key"), (True, True, False, "degraded", 200, "unreachable"),
     (False, False, True, "unhealthy", 503, "no_api_key"), (False, True, False, "unhealthy", 503, "unreachable")],
)
def test_health_report_statuses(ollama_up, key_set, reachable, status, code, cloud):
    got_code, body = health_report(ollama_up, key_set, reachable, frozenset({"qwen2.5:7b"}))
    assert (got_code, body["status"], body["deepseek"]) == (code, status, cloud)
    assert body["models"] == (["qwen2.5:7b"] if ollama_up else [])


def test_stream_usage_is_requested_from_the_backend_and_stripped_unless_the_client_asked():
    from hooks.usage import STRIP_STREAM_USAGE, request_stream_usage

    data = {"stream": True, "stream_options": {"foo": 1}}
    request_stream_usage(data)
    assert data["stream_options"] == {"foo": 1, "include_usage": True} and data[STRIP_STREAM_USAGE] is True
    asked = {"stream": True, "stream_options": {"include_usage": True}}
    request_stream_usage(asked)
    assert STRIP_STREAM_USAGE not in asked
    plain = {"stream": False}
    request_stream_usage(plain)
    assert plain == {"stream": False}


def test_backend_usage_with_reasoning_details_and_zero_usage_means_absent():
    from hooks.usage import usage_from_response

    usage = SimpleNamespace(prompt_tokens=7, completion_tokens=17,
                            completion_tokens_details=SimpleNamespace(reasoning_tokens=6),
                            prompt_tokens_details=SimpleNamespace(cached_tokens=2))
    assert usage_from_response(SimpleNamespace(usage=usage)) == Usage(7, 17, 6, 2)
    assert usage_from_response(SimpleNamespace(usage=SimpleNamespace(prompt_tokens=0, completion_tokens=0))) is None


def test_wait_for_usage_returns_on_success_and_gives_up_after_a_failure_grace():
    async def scenario() -> tuple[bool, float]:
        ctx = RequestContext()
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, lambda: (setattr(ctx, "usage", Usage(1, 1)), ctx.logged.set()))
        await asyncio.wait_for(wait_for_usage(ctx, timeout=10), 5)
        failed = RequestContext(backend_failures=1)
        start = loop.time()
        await wait_for_usage(failed, timeout=10, grace=0.1)
        return ctx.usage is not None, loop.time() - start

    got_usage, waited = asyncio.run(scenario())
    assert got_usage and waited < 5  # "must not hang" bound, not a timing assertion


def test_json_log_line_has_request_id_and_redacts_secrets():
    formatter = JsonLineFormatter(secrets=["team-secret-123456"])
    record = logging.LogRecord("gateway.test", logging.INFO, __file__, 1, "key %s and Bearer %s", ("team-secret-123456", "abcdefghijkl"), None)
    ctx = RequestContext()
    token = context.current.set(ctx)
    try:
        RequestIdFilter().filter(record)
    finally:
        context.current.reset(token)
    line = json.loads(formatter.format(record))
    assert line["request_id"] == ctx.request_id and line["level"] == "INFO" and line["logger"] == "gateway.test"
    assert "team-secret-123456" not in line["message"] and "abcdefghijkl" not in line["message"]
    assert line["message"].startswith("key [redacted sha256:")
    assert Redactor([])("x sk-abcdef0123456789 y").startswith("x [redacted sha256:")


def test_uvicorn_log_config_is_a_valid_dict_config_at_the_given_level():
    config = uvicorn_log_config("WARNING")
    logging.config.dictConfig({**config, "root": {"level": "WARNING", "handlers": []},
                               "loggers": {}})  # validates factories without taking over pytest's handlers
    assert config["root"]["level"] == "WARNING" and config["loggers"]["uvicorn.access"]["level"] == "WARNING"


def test_grafana_dashboard_queries_only_metrics_the_gateway_exports():
    import re

    from hooks import metrics
    from tests.harness import REPO

    dashboard = json.loads((REPO / "dashboards" / "grafana-gateway.json").read_text())
    exported = {m._name for m in (metrics.REQUESTS, metrics.FALLBACKS, metrics.TOKENS, metrics.COST, metrics.SAVED,
                                  metrics.DURATION, metrics.TTFT, metrics.BACKEND_UP, metrics.LEDGER_ERRORS)}
    used = set()
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            used |= {re.sub(r"_(total|bucket|count|sum)$", "", name) for name in re.findall(r"gateway_[a-z_]+", target["expr"])}
    assert used == {re.sub(r"_total$", "", name) for name in exported}
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
