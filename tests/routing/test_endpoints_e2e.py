"""Issue 13: the Responses API and legacy completions go through the same policy as chat, and are
recorded like chat (the ledger, the metrics, a client key's rate limit), with the openai SDK against
`gateway serve` and the emulators. The stored responses live in the ledger's SQLite file."""

from __future__ import annotations

import sqlite3

import openai
import pytest

from tests.harness import DEEPSEEK_KEY, Gateway
from tests.observability.helpers import scrape
from tests.security.conftest import ledger_rows

KEY = "sk-endpoints-3b5d7f9a1c2e4a6b8d0f2a4c6e8b1d3f"
LONG = "Explain: " + "x" * 600


@pytest.fixture(scope="module")
def limited(ollama, deepseek, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("endpoints-data")
    gw = Gateway("endpoints", {"OLLAMA_URL": ollama.url, "DEEPSEEK_URL": deepseek.url, "DEEPSEEK_API_KEY": DEEPSEEK_KEY,
                               "API_KEYS": KEY, "RATE_LIMIT_REQUESTS": "6", "RATE_LIMIT_WINDOW": "3600",
                               "DATA_DIR": str(data_dir)})
    gw.data_dir = data_dir
    yield gw.wait_ready()
    gw.stop()


def test_responses_and_completions_are_in_the_ledger_metrics_and_rate_limit(limited, ollama, deepseek):
    client = limited.client(KEY)
    raws = [client.responses.with_raw_response.create(model="auto", input="Hi"),
            client.responses.with_raw_response.create(model="auto", input=LONG),
            client.completions.with_raw_response.create(model="auto", prompt="Hi"),
            client.completions.with_raw_response.create(model="auto", prompt=LONG)]
    assert [(r.headers["x-gateway-route"], r.headers["x-gateway-reason"]) for r in raws] == [
        ("local", "simple"), ("cloud", "complexity")] * 2
    assert [r.headers["x-ratelimit-remaining-requests"] for r in raws] == ["5", "4", "3", "2"]
    rows = ledger_rows(limited.data_dir, [r.headers["x-request-id"] for r in raws])
    got = [tuple(rows[r.headers["x-request-id"]][k] for k in ("route", "reason", "served_model", "status")) for r in raws]
    assert got == [("local", "simple", "qwen2.5:7b", 200), ("cloud", "complexity", "deepseek-chat", 200)] * 2
    assert all(rows[r.headers["x-request-id"]]["prompt_tokens"] > 0 for r in raws)
    metrics = scrape(limited)
    served = {dict(labels)["route"]: v for (name, labels), v in metrics.items()
              if name == "gateway_requests_total" and dict(labels)["status"] == "200"}
    assert served == {"local": 2.0, "cloud": 2.0}
    with sqlite3.connect(limited.data_dir / "ledger.sqlite3") as db:  # the responses live in the ledger's database
        stored = [row[0] for row in db.execute("SELECT id FROM gateway_responses")]
    assert sorted(stored) == sorted([raws[0].parse().id, raws[1].parse().id])
    client.completions.create(model="auto", prompt="Hi")
    client.responses.create(model="auto", input="Hi")
    with pytest.raises(openai.RateLimitError):  # the key's 6 requests are used up, whichever endpoint used them
        client.responses.create(model="auto", input="Hi")
