"""Per-key monthly cloud budgets end to end: 2 workers sharing the spend through a real redis-server,
the ledger's costs, `gateway report` and `gateway keys budget`."""

from __future__ import annotations

import subprocess
import uuid

import openai
import pytest

from hooks.cost_rules import reset_text
from tests.cost.conftest import BUDGET_USD, CLOUD_IN, CLOUD_OUT, DEFAULT_BUDGET_USD, KEY_BUDGET, KEY_OTHER
from tests.harness import GATEWAY_BIN
from tests.observability.helpers import report_json, wait_until

COMPLEX = "Explain this log in detail: " + "x" * 600  # over the 500-character threshold: the cloud


def complex_request(gw, key: str, model: str = "auto"):
    raw = gw.client(key).chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": f"{COMPLEX} [{uuid.uuid4().hex[:8]}]"}])
    return raw.headers, raw.parse()


def remaining(gw, key: str) -> float:
    """x-gateway-budget-remaining-usd of a small local request (it costs nothing)."""
    raw = gw.client(key).chat.completions.with_raw_response.create(
        model="qwen2.5:7b", messages=[{"role": "user", "content": "ping"}], max_tokens=5)
    return float(raw.headers["x-gateway-budget-remaining-usd"])


def cost(usage) -> float:
    return usage.prompt_tokens * CLOUD_IN + usage.completion_tokens * CLOUD_OUT


def test_a_used_up_budget_keeps_the_key_local_and_refuses_named_cloud_models(cost_gateway, deepseek, ollama):
    assert remaining(cost_gateway, KEY_BUDGET) == pytest.approx(BUDGET_USD)
    spent = 0.0
    while spent < BUDGET_USD:  # scripted cloud traffic, across both workers
        headers, reply = complex_request(cost_gateway, KEY_BUDGET)
        assert (headers["x-gateway-route"], headers["x-gateway-reason"]) == ("cloud", "complexity")
        spent += cost(reply.usage)
    cloud_calls = deepseek.chats()
    assert cloud_calls == 3  # about 0.02 USD each at the test prices
    wait_until(lambda: remaining(cost_gateway, KEY_BUDGET) == 0.0, "the spend to be charged in Redis")

    for _ in range(4):  # both workers see the shared spend
        headers, reply = complex_request(cost_gateway, KEY_BUDGET)
        assert (headers["x-gateway-route"], headers["x-gateway-reason"]) == ("local", "budget")
        assert reply.model == "qwen2.5:7b"
        assert float(headers["x-gateway-budget-remaining-usd"]) == 0.0
        with pytest.raises(openai.RateLimitError) as refused:
            complex_request(cost_gateway, KEY_BUDGET, model="deepseek-chat")
        error = refused.value.body
        assert refused.value.status_code == 429 and error["code"] == "budget_exceeded"
        assert f"resets on {reset_text(0 + __import__('time').time())}" in error["message"]
        assert "deepseek-chat is a cloud model and this key's monthly cloud budget is used up" in error["message"]
    assert deepseek.chats() == cloud_calls

    headers, _ = complex_request(cost_gateway, KEY_OTHER)  # another key is unaffected
    assert (headers["x-gateway-route"], headers["x-gateway-reason"]) == ("cloud", "complexity")
    assert float(headers["x-gateway-budget-remaining-usd"]) == pytest.approx(DEFAULT_BUDGET_USD)

    report = report_json(cost_gateway)
    budgets = {b["name"]: b for b in report["budgets"]}
    assert round(budgets["budgeted"]["spent_usd"], 2) == round(spent, 2)
    assert budgets["budgeted"]["budget_usd"] == BUDGET_USD and budgets["budgeted"]["remaining_usd"] == 0.0
    assert budgets["other"]["budget_usd"] == DEFAULT_BUDGET_USD

    show = subprocess.run([str(GATEWAY_BIN), "keys", "budget", "budgeted"], env=_env(cost_gateway), cwd=cost_gateway.cwd,
                          capture_output=True, text=True, timeout=60)
    assert show.returncode == 0, show.stderr
    assert f"{spent:.2f} of {BUDGET_USD:.2f} USD" in show.stdout


def _env(gw) -> dict:
    env = dict(gw.env)
    args = list(gw.proc.args)
    env["GATEWAY_CONFIG"] = args[args.index("--config") + 1]
    return env
