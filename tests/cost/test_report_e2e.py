"""`gateway report` against scripted traffic: cache savings next to local savings, exact to the cent,
and the seed's per-1,000 cost table."""

from __future__ import annotations

import hashlib
import uuid

import pytest

from tests.cost.conftest import CLOUD_IN, CLOUD_OUT, KEY_REPORT
from tests.observability.helpers import report_json, run_report, wait_until


def send(gw, text: str):
    raw = gw.client(KEY_REPORT).chat.completions.with_raw_response.create(
        model="auto", temperature=0, messages=[{"role": "user", "content": text}])
    return raw.headers, raw.parse()


def cloud_price(usage) -> float:
    return usage.prompt_tokens * CLOUD_IN + usage.completion_tokens * CLOUD_OUT


def test_report_shows_cache_savings_and_the_per_1000_table_from_the_ledger(cost_gateway):
    expected = {"cost": 0.0, "saved": 0.0, "cache_saved": 0.0, "hits": 0, "requests": 0}
    for text, route in ((f"Explain: {'y' * 600} {uuid.uuid4().hex}", "cloud"),
                        (f"Summarise: {'z' * 700} {uuid.uuid4().hex}", "cloud"),
                        (f"Hello {uuid.uuid4().hex}", "local"), (f"Thanks {uuid.uuid4().hex}", "local"),
                        (f"Bye {uuid.uuid4().hex}", "local")):
        for attempt in ("miss", "hit"):
            headers, reply = send(cost_gateway, text)
            assert (headers["x-gateway-route"], headers["x-gateway-cache"]) == (route, attempt)
            price = cloud_price(reply.usage)
            expected["requests"] += 1
            if route == "local":
                expected["saved"] += price  # local_cost_per_1k_tokens is 0: the whole cloud price is saved
            elif attempt == "miss":
                expected["cost"] += price
            else:
                expected["cache_saved"] += price
            expected["hits"] += attempt == "hit"
    key_id = f"sha256:{hashlib.sha256(KEY_REPORT.encode()).hexdigest()[:8]}"

    def mine():
        row = report_json(cost_gateway)["by_key"].get(key_id)
        return row if row and row["requests"] == expected["requests"] else None

    row = wait_until(mine, "the report key's 10 ledger records")
    assert row["cache_hits"] == expected["hits"] == 5
    assert round(row["cost_usd"], 2) == round(expected["cost"], 2) and row["cost_usd"] == pytest.approx(expected["cost"])
    assert round(row["cache_saved_usd"], 2) == round(expected["cache_saved"], 2)
    assert row["cache_saved_usd"] == pytest.approx(expected["cache_saved"])
    assert row["saved_usd"] == pytest.approx(expected["saved"])

    report = report_json(cost_gateway)
    assert report["cost_comparison"]["cache_saved_usd"] >= row["cache_saved_usd"]
    table = {r["requests"].split(" (")[0]: r for r in report["per_1000"]}
    assert set(table) == {"1,000 simple", "1,000 complex", "1,000 mixed"}
    assert table["1,000 simple"]["with_gateway_usd"] == 0.0 and table["1,000 simple"]["local_saved_usd"] > 0
    complex_ = table["1,000 complex"]
    assert complex_["cloud_only_usd"] == pytest.approx(complex_["with_gateway_usd"] + complex_["cache_saved_usd"])
    assert complex_["cache_saved_usd"] > 0
    text = run_report(cost_gateway, "--since", "1h").stdout
    print(text)  # docs/costs.md quotes this output
    assert "saved by the response cache" in text and "per 1,000 requests (USD)" in text
    assert "cloud budgets" in text and "budgeted" in text
