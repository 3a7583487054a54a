"""Issue 4 acceptance: a scripted mix of local, cloud and fallback requests through a real
2-worker gateway, then the ledger (`gateway report`), /metrics and the JSON logs must show
exactly what was sent. Expected tokens come from the emulators' rules, costs from config.yaml.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest
import yaml

from emulators._common import REASONING_TEXT, count_prompt_tokens, count_words
from tests.harness import DEEPSEEK_KEY, MASTER_KEY, REPO
from tests.observability.conftest import LOCAL_COST_PER_1K
from tests.observability.helpers import json_lines, png_size, report_json, run_report, scrape, wait_until

SHORT = [{"role": "user", "content": "Say hello."}]
LONG = [{"role": "user", "content": "Explain this log: " + "x" * 600}]
REPLY_WORDS = 11  # "Hello from <model>." + 8 x " word"
REASONING_WORDS = count_words(REASONING_TEXT)
CONFIG = yaml.safe_load((REPO / "config.yaml").read_text())
PRICES = {m["model_name"]: m["model_info"] for m in CONFIG["model_list"]}
CLOUD_DEFAULT = CONFIG["gateway_settings"]["cloud_default"]


@dataclass
class Sent:
    """One request of the mix, as the test expects the ledger to record it."""

    route: str
    reason: str
    model: str | None  # the served model group
    prompt: int = 0
    completion: int = 0
    reasoning: int = 0
    status: int = 200
    cause: str | None = None
    stream: bool = False
    request_id: str = ""

    def tier(self) -> str | None:
        return None if self.model is None else PRICES[self.model]["gateway_tier"]

    def cloud_price(self, model: str) -> float:
        info = PRICES[model]
        return self.prompt * info["input_cost_per_token"] + self.completion * info["output_cost_per_token"]

    def cost(self) -> float:
        if self.model is None:
            return 0.0
        if self.tier() == "local":
            return (self.prompt + self.completion) * LOCAL_COST_PER_1K / 1000
        return self.cloud_price(self.model)

    def saved(self) -> float:
        return self.cloud_price(CLOUD_DEFAULT) - self.cost() if self.tier() == "local" else 0.0


def _call(client, sent: Sent, **kwargs) -> Sent:
    try:
        raw = client.chat.completions.with_raw_response.create(**kwargs)
        body = raw.parse()
        if kwargs.get("stream"):
            text = "".join(c.choices[0].delta.content or "" for c in body if c.choices)
            assert text.startswith("Hello from")
        headers = raw.headers
    except openai.APIStatusError as exc:
        assert exc.status_code == sent.status
        headers = exc.response.headers
    assert (headers["x-gateway-route"], headers["x-gateway-reason"]) == (sent.route, sent.reason)
    sent.request_id = headers["x-request-id"]
    return sent


@pytest.fixture(scope="module")
def mix(ledger_gateway, ollama, deepseek) -> list[Sent]:
    ollama.reset()
    deepseek.reset()
    client = ledger_gateway.client()
    p_short, p_long = count_prompt_tokens(SHORT), count_prompt_tokens(LONG)
    sent = []
    for _ in range(2):
        sent.append(_call(client, Sent("local", "simple", "qwen2.5:7b", p_short, REPLY_WORDS), model="auto", messages=SHORT))
    sent.append(_call(client, Sent("local", "simple", "llama3.2:3b", p_short, REPLY_WORDS, stream=True),
                      model="llama3.2:3b", messages=SHORT, stream=True))
    sent.append(_call(client, Sent("cloud", "complexity", "deepseek-chat", p_long, REPLY_WORDS), model="auto", messages=LONG))
    sent.append(_call(client, Sent("cloud", "explicit", "deepseek-reasoner", p_short, REPLY_WORDS + REASONING_WORDS,
                                   REASONING_WORDS, stream=True), model="deepseek-reasoner", messages=SHORT, stream=True))
    for stream in (False, True):
        ollama.fault("http_500", count=1)
        sent.append(_call(client, Sent("cloud", "local-error-fallback", "deepseek-chat", p_short, REPLY_WORDS,
                                       cause="server-error", stream=stream), model="auto", messages=SHORT, stream=stream))
    deepseek.fault("http_503", count=1)
    sent.append(_call(client, Sent("local", "cloud-error-fallback", "qwen2.5:7b", p_long, REPLY_WORDS, cause="server-error"),
                      model="auto", messages=LONG))
    sent.append(_call(client, Sent("none", "not-routed", None, status=404), model="gpt-9", messages=SHORT))
    ollama.fault("http_500", count=1)
    deepseek.fault("http_500", count=1)
    sent.append(_call(client, Sent("none", "local-error-fallback", None, status=503, cause="server-error"), model="auto", messages=SHORT))
    wait_until(lambda: report_json(ledger_gateway)["totals"]["requests"] == len(sent), "all ledger records")
    return sent


def _sums(sent: list[Sent]) -> dict:
    return {"requests": len(sent), "errors": sum(s.status >= 400 for s in sent),
            "prompt_tokens": sum(s.prompt for s in sent), "completion_tokens": sum(s.completion for s in sent),
            "reasoning_tokens": sum(s.reasoning for s in sent)}


def _approx(value: float) -> object:
    return pytest.approx(value, rel=1e-9, abs=1e-15)


def test_report_json_shows_exactly_the_requests_tokens_and_costs_sent(ledger_gateway, mix):
    report = report_json(ledger_gateway)
    totals = report["totals"]
    assert {k: totals[k] for k in _sums(mix)} == _sums(mix)
    assert totals["cost_usd"] == _approx(sum(s.cost() for s in mix))
    for route in ("local", "cloud", "none"):
        of_route = [s for s in mix if s.route == route]
        got = report["by_route"][route]
        assert {k: got[k] for k in _sums(of_route)} == _sums(of_route), route
        assert got["cost_usd"] == _approx(sum(s.cost() for s in of_route)), route
    assert {m: t["requests"] for m, t in report["by_model"].items()} == Counter(s.model or "(not served)" for s in mix)
    master = "sha256:" + hashlib.sha256(MASTER_KEY.encode()).hexdigest()[:8]
    assert report["by_key"][master]["requests"] == len(mix)
    assert report["fallbacks"] == [
        {"from_tier": "cloud", "to_tier": "local", "cause": "server-error", "requests": 1},
        {"from_tier": "local", "to_tier": "cloud", "cause": "server-error", "requests": 3},
    ]


def test_savings_equal_the_cloud_default_price_of_local_tokens_minus_local_cost(ledger_gateway, mix):
    comparison = report_json(ledger_gateway)["cost_comparison"]
    expected_saved = sum(s.saved() for s in mix)
    assert expected_saved > 0
    assert comparison["saved_usd"] == _approx(expected_saved)
    assert comparison["cloud_spend_usd"] == _approx(sum(s.cost() for s in mix if s.tier() == "cloud"))
    assert comparison["local_cost_usd"] == _approx(sum(s.cost() for s in mix if s.tier() == "local"))
    assert comparison["cloud_only_usd"] == _approx(sum(s.cost() for s in mix) + expected_saved)


def test_ledger_rows_carry_each_response_request_id_route_and_reason(ledger_gateway, mix):
    path = Path(ledger_gateway.env["DATA_DIR"]) / "ledger.sqlite3"
    with sqlite3.connect(path) as conn:
        rows = {r[0]: r[1:] for r in conn.execute(
            "SELECT request_id, route, reason, served_model, status, fallback_cause, stream, tokens_counted, ttft_ms "
            "FROM gateway_requests")}
    for s in mix:
        route, reason, model, status, cause, stream, counted, ttft = rows[s.request_id]
        assert (route, reason, model, status, cause, bool(stream)) == (s.route, s.reason, s.model, s.status, s.cause, s.stream)
        assert counted == 0, "backend usage was available for every request"
        assert (ttft is not None) == (s.stream and s.status == 200)


def test_metrics_of_a_two_worker_gateway_show_the_same_counts(ledger_gateway, mix):
    metrics = scrape(ledger_gateway)

    def value(name: str, **labels: str) -> float:
        return metrics.get((name, tuple(sorted(labels.items()))), 0.0)

    requests = Counter((s.route, s.reason, s.model or "none", str(s.status)) for s in mix)
    got = {k[1]: v for k, v in metrics.items() if k[0] == "gateway_requests_total"}
    assert {tuple(dict(labels)[n] for n in ("route", "reason", "model", "status")): v for labels, v in got.items()} == requests
    tokens = defaultdict(int)
    for s in mix:
        for kind, n in (("prompt", s.prompt), ("completion", s.completion), ("reasoning", s.reasoning)):
            tokens[(s.route, kind)] += n
    for (route, kind), n in tokens.items():
        assert value("gateway_tokens_total", route=route, kind=kind) == n, (route, kind)
    assert value("gateway_fallbacks_total", from_tier="local", to_tier="cloud", cause="server-error") == 3
    assert value("gateway_fallbacks_total", from_tier="cloud", to_tier="local", cause="server-error") == 1
    assert value("gateway_cost_usd_total", route="cloud") == _approx(sum(s.cost() for s in mix if s.route == "cloud"))
    assert value("gateway_saved_usd_total") == _approx(sum(s.saved() for s in mix))
    for route in ("local", "cloud", "none"):
        assert value("gateway_request_duration_seconds_count", route=route) == sum(s.route == route for s in mix)
        streams = sum(s.route == route and s.stream and s.status == 200 for s in mix)
        assert value("gateway_time_to_first_token_seconds_count", route=route) == streams
    assert value("gateway_backend_up", backend="ollama") == 1
    assert value("gateway_backend_up", backend="deepseek") == 1


def test_report_plot_writes_a_png(ledger_gateway, mix, tmp_path):
    target = tmp_path / "savings.png"
    result = run_report(ledger_gateway, "--since", "7d", "--plot", str(target))
    assert result.returncode == 0, result.stderr
    assert png_size(target) == (1000, 700)
    assert target.stat().st_size > 10_000


def test_report_table_and_csv_formats(ledger_gateway, mix):
    table = run_report(ledger_gateway, "--since", "24h")
    assert table.returncode == 0, table.stderr
    assert "cost comparison" in table.stdout and "local -> cloud" in table.stdout
    rows = run_report(ledger_gateway, "--format", "csv").stdout.splitlines()
    assert rows[0] == "section,name,requests,errors,prompt_tokens,completion_tokens,reasoning_tokens,cost_usd,saved_usd"
    assert rows[1].startswith(f"total,all,{len(mix)},2,")
    bad = run_report(ledger_gateway, "--since", "yesterday")
    assert bad.returncode == 2 and "30m, 24h, 7d or 2w" in bad.stderr


def test_request_id_header_appears_in_that_request_json_log_lines(ledger_gateway, mix):
    rid = mix[0].request_id
    scrape(ledger_gateway)  # a non-inference request, for the access-log check below
    lines = json_lines(ledger_gateway.log())
    mine = [line for line in lines if line.get("request_id") == rid]
    assert "gateway.request" in {line["logger"] for line in mine}
    # inference requests get the gateway's request line instead of uvicorn's access line; other paths keep theirs
    assert "uvicorn.access" not in {line["logger"] for line in mine}
    access = [line["message"] for line in lines if line["logger"] == "uvicorn.access"]
    assert any('"GET /metrics HTTP/1.1" 200' in m for m in access), access[-5:]
    assert not any("/chat/completions" in m for m in access)
    summary = next(line for line in mine if line["logger"] == "gateway.request")
    assert (summary["route"], summary["reason"], summary["served_model"], summary["status"]) == ("local", "simple", "qwen2.5:7b", 200)
    text = ledger_gateway.log()
    assert MASTER_KEY not in text and DEEPSEEK_KEY not in text
