"""One identity per request (issue 17, findings 1-3, 11): whatever header carries the key, the
gateway's checks, limits and ledger use the key LiteLLM authenticates, and only configured
model groups are served."""

from __future__ import annotations

import httpx
import pytest

from tests.reliability.helpers import SHORT, assert_error, assert_openai_error
from tests.security.conftest import CLIENT_KEY, OTHER_KEY, ledger_rows
from proxy_config.keys import key_digest, key_id

# Every header LiteLLM 1.108.7 takes a key from (litellm/types/proxy/auth/special_headers.py).
KEY_HEADERS = {
    "authorization": lambda key: {"Authorization": f"Bearer {key}"},
    "x-api-key": lambda key: {"x-api-key": key},
    "api-key": lambda key: {"api-key": key},
    "x-goog-api-key": lambda key: {"x-goog-api-key": key},
    "x-litellm-api-key": lambda key: {"x-litellm-api-key": key},
    "ocp-apim-subscription-key": lambda key: {"Ocp-Apim-Subscription-Key": key},
}
CHAT = {"model": "auto", "messages": SHORT}


def chat(gateway, body: dict, headers: dict, path: str = "/v1/chat/completions") -> httpx.Response:
    return httpx.post(f"{gateway.url}{path}", json=body, headers=headers, timeout=60)


@pytest.mark.parametrize("header", KEY_HEADERS)
def test_client_key_works_in_every_header_litellm_accepts(secure, ollama, header):
    response = chat(secure, CHAT, KEY_HEADERS[header](CLIENT_KEY))
    assert response.status_code == 200, response.text
    assert response.headers["x-ratelimit-limit-requests"] == "100000"  # counted against the client key


@pytest.mark.parametrize("header", KEY_HEADERS)
@pytest.mark.parametrize("field,value", [("num_retries", 20), ("timeout", 0.00001), ("mock_response", "hi"),
                                         ("caching", True), ("api_version", "x")])
def test_blocked_fields_are_refused_through_every_key_header(secure, ollama, deepseek, header, field, value):
    ollama.fault("http_500")
    deepseek.fault("http_500")
    response = chat(secure, {**CHAT, field: value}, KEY_HEADERS[header](CLIENT_KEY))
    error = assert_openai_error(response, 400)
    assert (error["param"], error["code"]) == (field, "unsupported_parameter")
    assert ollama.chats() + deepseek.chats() == 0


@pytest.mark.parametrize("header", KEY_HEADERS)
def test_max_tokens_check_applies_through_every_key_header(secure, ollama, header):
    response = chat(secure, {**CHAT, "max_tokens": 10**9}, KEY_HEADERS[header](CLIENT_KEY))
    assert assert_openai_error(response, 400)["param"] == "max_tokens"
    assert ollama.chats() == 0


def test_both_tiers_failing_costs_one_call_per_tier(secure, ollama, deepseek):
    ollama.fault("http_500")
    deepseek.fault("http_500")
    response = chat(secure, CHAT, KEY_HEADERS["x-goog-api-key"](CLIENT_KEY))
    assert_openai_error(response, 503)
    assert (ollama.chats(), deepseek.chats()) == (1, 1)


def test_ledger_attributes_each_request_to_the_authenticated_key(secure, ollama, data_dir):
    expected = {}
    for header, build in KEY_HEADERS.items():
        response = chat(secure, CHAT, build(CLIENT_KEY))
        assert response.status_code == 200, (header, response.text)
        expected[response.headers["x-request-id"]] = key_id(key_digest(CLIENT_KEY))
    # LiteLLM prefers x-litellm-api-key over Authorization: so does the ledger.
    forged = chat(secure, CHAT, {"x-litellm-api-key": CLIENT_KEY, "Authorization": "Bearer junk-key-0000000"})
    assert forged.status_code == 200, forged.text
    expected[forged.headers["x-request-id"]] = key_id(key_digest(CLIENT_KEY))
    other = chat(secure, CHAT, {"x-litellm-api-key": OTHER_KEY, "Authorization": f"Bearer {CLIENT_KEY}"})
    expected[other.headers["x-request-id"]] = key_id(key_digest(OTHER_KEY))
    rejected = chat(secure, {**CHAT, "temperature": 9}, KEY_HEADERS["ocp-apim-subscription-key"](OTHER_KEY))
    assert_openai_error(rejected, 400)
    expected[rejected.headers["x-request-id"]] = key_id(key_digest(OTHER_KEY))
    rows = ledger_rows(data_dir, list(expected))
    assert {rid: row["key_hash"] for rid, row in rows.items()} == expected


@pytest.mark.parametrize("model", ["deepseek/deepseek-chat", "deepseek/deepseek-reasoner", "ollama_chat/qwen2.5:7b",
                                   "openai/gpt-4o", "qwen2.5:7b ", "AUTO"])
@pytest.mark.parametrize("path,body", [
    ("/v1/chat/completions", {"messages": SHORT}), ("/chat/completions", {"messages": SHORT}),
    ("/v1/completions", {"prompt": "hi"}), ("/v1/embeddings", {"input": "hi"}),
    ("/v1/responses", {"input": "hi"}), ("/v1/messages", {"messages": SHORT, "max_tokens": 5}),
])
def test_only_configured_model_groups_are_served(secure, ollama, deepseek, model, path, body):
    response = chat(secure, {**body, "model": model}, {"Authorization": f"Bearer {CLIENT_KEY}"}, path)
    error = assert_error(response, 404)  # Anthropic's shape on /v1/messages
    assert (error["code"], error["param"]) == ("model_not_found", "model")
    assert "GET /v1/models" in error["message"]
    assert ollama.chats() + deepseek.chats() == 0


@pytest.mark.parametrize("path", ["/openai/deployments/gpt-4o/chat/completions", "/engines/deepseek-v9/completions",
                                  "/openai/deployments/deepseek%2Fdeepseek-chat/chat/completions"])
def test_model_in_the_path_must_be_configured_too(secure, ollama, path):
    response = chat(secure, {"messages": SHORT, "prompt": "hi"}, {"Authorization": f"Bearer {CLIENT_KEY}"}, path)
    assert assert_openai_error(response, 404)["code"] in ("model_not_found", "not_served")
    assert ollama.chats() == 0


def test_a_configured_model_in_the_path_is_served(secure, ollama):
    served = chat(secure, {"messages": SHORT}, {"Authorization": f"Bearer {CLIENT_KEY}"},
                  "/openai/deployments/qwen2.5:7b/chat/completions")
    assert served.status_code == 200, served.text


def test_ledger_stores_the_group_name_never_the_raw_model_string(secure, ollama, data_dir):
    pasted = "sk-pasted-into-model-9e8d7c6b5a4f3e2d"
    bad = chat(secure, {**CHAT, "model": pasted}, {"Authorization": f"Bearer {CLIENT_KEY}"})
    assert_openai_error(bad, 404)
    good = chat(secure, {**CHAT, "model": "qwen2.5:7b"}, {"Authorization": f"Bearer {CLIENT_KEY}"})
    assert good.status_code == 200
    rows = ledger_rows(data_dir, [bad.headers["x-request-id"], good.headers["x-request-id"]])
    assert rows[bad.headers["x-request-id"]]["requested_model"] is None
    assert rows[bad.headers["x-request-id"]]["status"] == 404
    assert rows[good.headers["x-request-id"]]["requested_model"] == "qwen2.5:7b"
    on_disk = b"".join(p.read_bytes() for p in data_dir.rglob("*") if p.is_file())
    assert pasted.encode() not in on_disk


@pytest.mark.parametrize("model,n,cap", [("deepseek-chat", 5, 4), ("auto", 2, 1), ("qwen2.5:7b", 3, 1)])
def test_n_is_capped_per_model(secure, ollama, deepseek, model, n, cap):
    response = chat(secure, {"model": model, "messages": SHORT, "n": n}, {"x-goog-api-key": CLIENT_KEY})
    error = assert_openai_error(response, 400)
    assert (error["param"], error["code"]) == ("n", "n_too_large")
    assert f"at most {cap}" in error["message"]
    assert ollama.chats() + deepseek.chats() == 0


def test_n_within_the_cap_is_served(secure, deepseek):
    response = chat(secure, {"model": "deepseek-chat", "messages": SHORT, "n": 4}, {"x-api-key": CLIENT_KEY})
    assert response.status_code == 200, response.text
