"""Issue 3 acceptance, auth part: who may call what, with the real openai SDK and httpx."""

from __future__ import annotations

import re

import httpx
import openai
import pytest

from tests.auth.conftest import KEY_A, KEY_B, KEY_QUERY, KEY_VIP, LIMIT, VIP_LIMIT, auth_header
from tests.harness import MASTER_KEY

SHORT = [{"role": "user", "content": "Say hello."}]
CHAT = {"model": "qwen2.5:7b", "messages": SHORT}
RESET = re.compile(r"^(\d+ms|\d+s|\d+m\d+s)$")


TYPES = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}


def assert_openai_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["code"]) == (TYPES[status], code)
    return error


def test_missing_key_gets_401_saying_how_to_send_one(limited, fresh_redis):
    response = httpx.post(f"{limited.url}/v1/chat/completions", json=CHAT, timeout=30)
    error = assert_openai_error(response, 401, "missing_api_key")
    assert "Authorization: Bearer <key>" in error["message"]


def test_invalid_key_gets_401_through_the_sdk(limited, fresh_redis):
    with pytest.raises(openai.AuthenticationError) as caught:
        limited.client("sk-not-a-configured-key-000000").chat.completions.create(model="qwen2.5:7b", messages=SHORT)
    assert caught.value.status_code == 401
    assert (caught.value.body["type"], caught.value.body["code"]) == ("authentication_error", "invalid_api_key")
    assert caught.value.body["message"].startswith("Invalid API key (sha256:")
    assert "sk-not-a-configured" not in caught.value.body["message"]


def test_client_key_succeeds_with_rate_limit_headers(limited, ollama, fresh_redis):
    raw = limited.client(KEY_A).chat.completions.with_raw_response.create(model="qwen2.5:7b", messages=SHORT)
    assert raw.parse().choices[0].message.content.startswith("Hello from qwen2.5:7b.")
    assert raw.headers["x-ratelimit-limit-requests"] == str(LIMIT)
    assert raw.headers["x-ratelimit-remaining-requests"] == str(LIMIT - 1)
    assert RESET.match(raw.headers["x-ratelimit-reset-requests"])
    assert "retry-after" not in raw.headers
    assert raw.headers["x-gateway-route"] == "local"
    assert ollama.chats("qwen2.5:7b") == 1


def test_streaming_response_carries_rate_limit_headers(limited, fresh_redis):
    with httpx.stream("POST", f"{limited.url}/v1/chat/completions", headers=auth_header(KEY_B), timeout=30,
                      json={**CHAT, "stream": True}) as response:
        assert response.status_code == 200
        assert response.headers["x-ratelimit-remaining-requests"] == str(LIMIT - 1)
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"


def test_models_list_is_a_client_route(limited, fresh_redis):
    response = httpx.get(f"{limited.url}/v1/models", headers=auth_header(KEY_A), timeout=30)
    assert response.status_code == 200
    assert "qwen2.5:7b" in {m["id"] for m in response.json()["data"]}
    assert response.headers["x-ratelimit-remaining-requests"] == str(LIMIT - 1)


@pytest.mark.parametrize(("method", "path"), [("POST", "/key/generate"), ("GET", "/model/info"), ("GET", "/global/spend")])
def test_client_key_is_refused_on_admin_routes(limited, fresh_redis, method, path):
    response = httpx.request(method, f"{limited.url}{path}", headers=auth_header(KEY_A), json={}, timeout=30)
    error = assert_openai_error(response, 403, "admin_key_required")
    assert "master" in error["message"]


def test_master_key_passes_admin_and_llm_routes_without_limits(limited, fresh_redis):
    info = httpx.get(f"{limited.url}/model/info", headers=auth_header(MASTER_KEY), timeout=30)
    assert info.status_code == 200
    assert "auto" in {m["model_name"] for m in info.json()["data"]}
    raw = limited.client(MASTER_KEY).chat.completions.with_raw_response.create(model="qwen2.5:7b", messages=SHORT)
    assert raw.http_response.status_code == 200
    assert "x-ratelimit-limit-requests" not in raw.headers


def test_unauthenticated_health_routes(limited):
    for path in ("/health", "/health/liveliness", "/health/readiness"):
        assert httpx.get(f"{limited.url}{path}", timeout=30).status_code == 200, path


def test_keys_file_override_applies_its_own_limit(limited, fresh_redis):
    statuses = []
    for _ in range(VIP_LIMIT + 1):
        response = httpx.post(f"{limited.url}/v1/chat/completions", headers=auth_header(KEY_VIP), json=CHAT, timeout=30)
        statuses.append(response.status_code)
    assert statuses == [200] * VIP_LIMIT + [429]
    assert response.headers["x-ratelimit-limit-requests"] == str(VIP_LIMIT)
    assert "vip" in response.json()["error"]["message"]


def test_query_api_key_works_when_enabled_and_is_not_logged(limited, fresh_redis):
    response = httpx.post(f"{limited.url}/v1/chat/completions", params={"api_key": KEY_QUERY, "trace": "1"},
                          json=CHAT, timeout=30)
    assert response.status_code == 200
    assert response.headers["x-ratelimit-remaining-requests"] == str(LIMIT - 1)
    assert KEY_QUERY not in limited.log()


def test_query_api_key_is_refused_when_disabled(second, fresh_redis):
    response = httpx.post(f"{second.url}/v1/chat/completions", params={"api_key": KEY_QUERY}, json=CHAT, timeout=30)
    error = assert_openai_error(response, 401, "missing_api_key")
    assert "ALLOW_QUERY_API_KEY" in error["message"]
