"""/health's three statuses from cached state, and a ledger that cannot write (read-only or full
disk) while requests keep succeeding, with the error logged and counted."""

from __future__ import annotations

import httpx
import openai
import pytest

from emulators.ollama import DEFAULT_MODELS
from tests.harness import DEEPSEEK_KEY, MASTER_KEY
from tests.observability.helpers import json_lines, scrape, wait_until

SHORT = [{"role": "user", "content": "Say hello."}]


def health(gw) -> tuple[int, dict]:
    response = httpx.get(f"{gw.url}/health", timeout=5)
    return response.status_code, response.json()


def test_health_is_healthy_with_ollama_up_and_a_key(gateway):
    status, body = health(gateway)
    assert status == 200
    assert body == {"status": "healthy", "ollama": "connected", "deepseek": "connected", "models": sorted(DEFAULT_MODELS)}


def test_health_is_degraded_with_ollama_down(readonly_gateway):
    status, body = health(readonly_gateway)
    assert status == 200
    assert body == {"status": "degraded", "ollama": "unreachable", "deepseek": "connected", "models": []}


def test_health_is_unhealthy_with_both_down_and_exposes_no_secret(clouddown_gateway):
    assert health(clouddown_gateway) == (200, {"status": "degraded", "ollama": "unreachable", "deepseek": "connected", "models": []})
    with pytest.raises(openai.APIStatusError) as caught:
        clouddown_gateway.client().chat.completions.create(model="auto", messages=SHORT)
    assert caught.value.status_code == 503
    # The refused connection marks the cloud unreachable (LiteLLM's failure callback runs just after the response).
    response = wait_until(lambda: (r := httpx.get(f"{clouddown_gateway.url}/health", timeout=5)).status_code == 503 and r,
                          "/health to turn unhealthy")
    assert response.json() == {"status": "unhealthy", "ollama": "unreachable", "deepseek": "unreachable", "models": []}
    assert DEEPSEEK_KEY not in response.text and MASTER_KEY not in response.text
    assert scrape(clouddown_gateway)[("gateway_backend_up", (("backend", "deepseek"),))] == 0


def test_liveness_and_readiness_stay_available(clouddown_gateway):
    assert httpx.get(f"{clouddown_gateway.url}/health/liveliness", timeout=5).status_code == 200
    assert httpx.get(f"{clouddown_gateway.url}/health/readiness", timeout=5).status_code == 200


def test_unwritable_ledger_counts_and_logs_the_error_while_requests_succeed(readonly_gateway, deepseek):
    client = readonly_gateway.client()
    for stream in (False, True, False):
        raw = client.chat.completions.with_raw_response.create(model="auto", messages=SHORT, stream=stream)
        assert raw.status_code == 200
        assert (raw.headers["x-gateway-route"], raw.headers["x-gateway-reason"]) == ("cloud", "local-unavailable")
    errors = ("gateway_ledger_errors_total", (("kind", "write"),))
    wait_until(lambda: scrape(readonly_gateway).get(errors) == 3, "3 ledger write errors counted")
    lines = json_lines(readonly_gateway.log())
    failures = [line for line in lines if line["logger"] == "gateway.ledger" and line["level"] == "ERROR"]
    assert failures and "cannot write to the ledger" in failures[0]["message"]
    assert failures[0]["ledger_error"] == "write"
    assert not [line for line in lines if line["level"] in ("INFO", "DEBUG")], "LOG_LEVEL=WARNING must hide INFO lines"
    assert deepseek.chats("deepseek-chat") == 3
