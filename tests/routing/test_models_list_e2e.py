"""Issue 13: GET /v1/models marks what can answer now (proxy_config/model_listing.py), with the openai SDK.

Models stay listed (a name that is not installed still answers, from the other tier); each configured model
carries `tier`, `available`, `installed` (local) and a `note` saying what happens when it is not available."""

from __future__ import annotations

import pytest

from tests.harness import DEEPSEEK_KEY, Gateway, dead_url

CLIENT_KEY = "sk-client-models-8d2f4b6a0c1e3f5a7b9d"


@pytest.fixture(scope="module")
def no_ollama(deepseek):
    gw = Gateway("models-no-ollama", {"OLLAMA_URL": dead_url(), "DEEPSEEK_URL": deepseek.url,
                                      "DEEPSEEK_API_KEY": DEEPSEEK_KEY, "API_KEYS": CLIENT_KEY})
    yield gw.wait_ready()
    gw.stop()


def listed(client) -> dict[str, dict]:
    return {model.id: model.model_extra for model in client.models.list()}


def test_a_model_that_is_not_installed_is_listed_and_marked_with_what_to_do(gateway):
    models = listed(gateway.client())
    assert models["qwen2.5:7b"] == {**models["qwen2.5:7b"], "tier": "local", "installed": True, "available": True}
    assert "note" not in models["qwen2.5:7b"]
    missing = models["qwen2.5:3b"]  # the emulator does not have it installed
    assert (missing["tier"], missing["installed"], missing["available"]) == ("local", False, False)
    assert "gateway models pull qwen2.5:3b" in missing["note"] and "served by the cloud (deepseek-chat)" in missing["note"]
    assert (models["deepseek-chat"]["tier"], models["deepseek-chat"]["available"]) == ("cloud", True)
    assert (models["auto"]["tier"], models["auto"]["available"]) == ("auto", True)


def test_a_model_that_is_not_installed_still_answers_from_the_cloud(gateway):
    raw = gateway.client().chat.completions.with_raw_response.create(
        model="qwen2.5:3b", messages=[{"role": "user", "content": "Hi"}])
    assert (raw.headers["x-gateway-route"], raw.headers["x-gateway-reason"]) == ("cloud", "local-unavailable")


def test_with_ollama_down_local_models_are_marked_unavailable_and_a_client_key_can_retrieve_one(no_ollama):
    client = no_ollama.client(CLIENT_KEY)
    models = listed(client)
    assert models["qwen2.5:7b"]["available"] is False
    assert models["qwen2.5:7b"]["note"].startswith("Not available locally: Ollama is not reachable")
    assert "get a 503" in models["nomic-embed-text"]["note"]  # embeddings have no cloud substitute
    assert models["auto"]["available"] is True and models["deepseek-chat"]["available"] is True
    one = client.models.retrieve("qwen2.5:7b")
    assert (one.id, one.model_extra["tier"], one.model_extra["available"]) == ("qwen2.5:7b", "local", False)
