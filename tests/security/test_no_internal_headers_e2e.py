"""Issue 13: no response of any endpoint, streaming or not, success or error, carries LiteLLM's internal
headers (x-litellm-model-api-base is Ollama's URL) or a backend URL (gateway/app.py strips them)."""

from __future__ import annotations

import httpx
import pytest

from tests.harness import MASTER_KEY

HI = [{"role": "user", "content": "Hi"}]
REQUESTS = {
    "chat": ("/v1/chat/completions", {"model": "auto", "messages": HI}),
    "chat stream": ("/v1/chat/completions", {"model": "auto", "messages": HI, "stream": True}),
    "chat cloud stream": ("/v1/chat/completions", {"model": "deepseek-chat", "messages": HI, "stream": True}),
    "completions": ("/v1/completions", {"model": "auto", "prompt": "Hi"}),
    "embeddings": ("/v1/embeddings", {"model": "nomic-embed-text", "input": "Hi"}),  # 503: not in the emulator
    "responses": ("/v1/responses", {"model": "auto", "input": "Hi"}),
    "messages": ("/v1/messages", {"model": "auto", "max_tokens": 20, "messages": HI}),
    "messages stream": ("/v1/messages", {"model": "auto", "max_tokens": 20, "messages": HI, "stream": True}),
    "messages cloud": ("/v1/messages", {"model": "deepseek-chat", "max_tokens": 20, "messages": HI}),
    "unknown model": ("/v1/chat/completions", {"model": "nope", "messages": HI}),
}


def leaks(response: httpx.Response, backends: list[str]) -> list[str]:
    found = [name for name in response.headers if name.lower().startswith(("x-litellm-", "llm_provider-"))]
    hosts = [url.split("//", 1)[1] for url in backends]
    return found + [f"{k}: {v}" for k, v in response.headers.items() if any(host in v for host in hosts)]


@pytest.mark.parametrize("name", list(REQUESTS))
def test_no_internal_header_or_backend_url_in_any_response(gateway, ollama, deepseek, name):
    path, body = REQUESTS[name]
    with httpx.stream("POST", f"{gateway.url}{path}", json=body, timeout=30,
                      headers={"Authorization": f"Bearer {MASTER_KEY}"}) as response:
        response.read()
    assert response.status_code == {"unknown model": 404, "embeddings": 503}.get(name, 200), response.text[:300]
    assert "x-gateway-route" in response.headers
    assert leaks(response, [ollama.url, deepseek.url]) == []


def test_no_internal_header_on_a_both_tiers_503(gateway, ollama, deepseek):
    ollama.fault("http_500")
    deepseek.fault("http_500")
    for stream in (False, True):
        response = httpx.post(f"{gateway.url}/v1/chat/completions", timeout=30,
                              json={"model": "auto", "messages": HI, "stream": stream},
                              headers={"Authorization": f"Bearer {MASTER_KEY}"})
        assert response.status_code == 503
        assert (response.headers["x-gateway-route"], response.headers["x-gateway-reason"]) == ("none", "local-error-fallback")
        assert leaks(response, [ollama.url, deepseek.url]) == []
