"""Issue 2 acceptance: the real openai SDK against `gateway serve` and the emulators."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from emulators._common import count_prompt_tokens
from tests.harness import DEEPSEEK_KEY, Gateway, dead_url, write_config

SHORT = [{"role": "user", "content": "Say hello."}]
LONG = [{"role": "user", "content": "Explain this log: " + "x" * 600}]
CONFIGURED = {"qwen2.5:7b", "qwen2.5:3b", "llama3.2:3b", "mistral:7b", "deepseek-r1:7b", "nomic-embed-text", "deepseek-chat",
              "deepseek-reasoner", "auto"}


def route_of(raw) -> tuple[str, str]:
    return raw.headers["x-gateway-route"], raw.headers["x-gateway-reason"]


def test_short_prompt_stays_local_with_route_headers(gateway, ollama, deepseek):
    raw = gateway.client().chat.completions.with_raw_response.create(model="auto", messages=SHORT)
    completion = raw.parse()
    assert route_of(raw) == ("local", "simple")
    assert completion.model == "qwen2.5:7b"
    assert completion.choices[0].message.content.startswith("Hello from qwen2.5:7b.")
    assert completion.usage.prompt_tokens == count_prompt_tokens(SHORT)
    assert raw.headers["x-request-id"]
    assert (ollama.chats("qwen2.5:7b"), deepseek.chats()) == (1, 0)


def test_streaming_through_local_tier_ends_with_done(gateway, ollama):
    with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", timeout=30,
                      headers={"Authorization": f"Bearer {gateway.env['LITELLM_MASTER_KEY']}"},
                      json={"model": "llama3.2:3b", "messages": SHORT, "stream": True}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert (response.headers["x-gateway-route"], response.headers["x-gateway-reason"]) == ("local", "simple")
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    stream = gateway.client().chat.completions.create(model="llama3.2:3b", messages=SHORT, stream=True)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == "Hello from llama3.2:3b. word word word word word word word word"
    assert ollama.chats("llama3.2:3b") == 2


def test_prompt_over_threshold_goes_to_cloud(gateway, ollama, deepseek):
    raw = gateway.client().chat.completions.with_raw_response.create(model="auto", messages=LONG)
    assert route_of(raw) == ("cloud", "complexity")
    assert raw.parse().model == "deepseek-chat"
    assert (ollama.chats(), deepseek.chats("deepseek-chat")) == (0, 1)


def test_explicit_cloud_model_always_goes_to_cloud(gateway, ollama, deepseek):
    raw = gateway.client().chat.completions.with_raw_response.create(model="deepseek-chat", messages=SHORT)
    assert route_of(raw) == ("cloud", "explicit")
    assert (ollama.chats(), deepseek.chats("deepseek-chat")) == (0, 1)


def test_deepseek_r1_is_local_and_its_thinking_passes_through(gateway, ollama, deepseek):
    raw = gateway.client().chat.completions.with_raw_response.create(model="deepseek-r1:7b", messages=SHORT)
    message = raw.parse().choices[0].message
    assert route_of(raw) == ("local", "simple")
    assert "Let me think step by step." in message.reasoning_content
    assert "<think>" not in message.content
    assert (ollama.chats("deepseek-r1:7b"), deepseek.chats()) == (1, 0)


def test_deepseek_reasoner_reasoning_content_streams_through(gateway, deepseek):
    stream = gateway.client().chat.completions.create(model="deepseek-reasoner", messages=SHORT, stream=True)
    reasoning, content = "", ""
    for chunk in stream:
        if chunk.choices:
            delta = chunk.choices[0].delta
            reasoning += getattr(delta, "reasoning_content", None) or ""
            content += delta.content or ""
    assert reasoning == "Let me think step by step."
    assert content.startswith("Hello from deepseek-reasoner.")


@pytest.mark.parametrize("stream", [False, True])
def test_local_500_falls_back_to_cloud(gateway, ollama, deepseek, stream):
    ollama.fault("http_500")
    raw = gateway.client().chat.completions.with_raw_response.create(model="auto", messages=SHORT, stream=stream)
    assert route_of(raw) == ("cloud", "local-error-fallback")
    if stream:
        text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
        assert text.startswith("Hello from deepseek-chat.")
    else:
        assert raw.parse().model == "deepseek-chat"
    assert deepseek.chats("deepseek-chat") == 1


def test_stream_failing_before_first_token_falls_back_to_cloud(gateway, ollama, deepseek):
    ollama.fault("error_before_first_token")
    raw = gateway.client().chat.completions.with_raw_response.create(model="auto", messages=SHORT, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    assert route_of(raw) == ("cloud", "local-error-fallback")
    assert text.startswith("Hello from deepseek-chat.")
    assert (ollama.chats("qwen2.5:7b"), deepseek.chats("deepseek-chat")) == (1, 1)


def test_cloud_failure_on_complex_request_is_served_locally(gateway, ollama, deepseek):
    deepseek.fault("http_503")
    raw = gateway.client().chat.completions.with_raw_response.create(model="auto", messages=LONG)
    assert route_of(raw) == ("local", "cloud-error-fallback")
    assert raw.parse().model == "qwen2.5:7b"
    assert (deepseek.chats("deepseek-chat"), ollama.chats("qwen2.5:7b")) == (1, 1)


def test_request_too_big_for_local_context_window_goes_to_cloud(gateway, ollama, deepseek):
    # 8192-token local window: a short prompt asking for 8190 output tokens cannot fit.
    raw = gateway.client().chat.completions.with_raw_response.create(model="mistral:7b", messages=SHORT, max_tokens=8190)
    assert route_of(raw) == ("cloud", "context-window")
    assert (ollama.chats(), deepseek.chats("deepseek-chat")) == (0, 1)


def test_models_lists_every_group_and_auto(gateway):
    raw = gateway.client().models.with_raw_response.list()
    assert {m.id for m in raw.parse()} == CONFIGURED
    assert route_of(raw) == ("none", "not-routed")  # route headers are on every response


def test_unknown_model_gets_openai_error(gateway):
    with pytest.raises(openai.NotFoundError) as caught:
        gateway.client().chat.completions.create(model="gpt-9", messages=SHORT)
    assert (caught.value.status_code, caught.value.body["code"]) == (404, "model_not_found")  # as OpenAI answers it
    assert "gpt-9" in caught.value.body["message"] and "GET /v1/models" in caught.value.body["message"]


@pytest.fixture(scope="module")
def ollama_down_gateway(deepseek):
    # The original design's .env used the full endpoint URL for DEEPSEEK_URL: it must keep working.
    gw = Gateway("ollama-down", {"OLLAMA_URL": dead_url(), "DEEPSEEK_URL": f"{deepseek.url}/chat/completions",
                                 "DEEPSEEK_API_KEY": DEEPSEEK_KEY})
    yield gw.wait_ready()
    gw.stop()


@pytest.mark.parametrize("stream", [False, True])
def test_ollama_down_is_answered_by_cloud_within_a_second(ollama_down_gateway, deepseek, stream):
    client = ollama_down_gateway.client()
    for _ in range(3):
        start = time.perf_counter()
        raw = client.chat.completions.with_raw_response.create(model="qwen2.5:7b", messages=SHORT, stream=stream)
        body = raw.parse()
        elapsed = time.perf_counter() - start
        assert route_of(raw) == ("cloud", "local-unavailable")
        if not stream:
            assert body.model == "deepseek-chat"
        assert elapsed < 1.0, f"took {elapsed:.2f}s"
    assert deepseek.chats("deepseek-chat") == 3


@pytest.fixture(scope="module")
def nothing_gateway():
    gw = Gateway("nothing", {"OLLAMA_URL": dead_url()})
    yield gw.wait_ready()
    gw.stop()


def test_everything_down_gets_503_naming_both_causes(nothing_gateway):
    with pytest.raises(openai.APIStatusError) as caught:
        nothing_gateway.client().chat.completions.create(model="auto", messages=SHORT)
    error = caught.value
    assert error.status_code == 503
    assert "Ollama" in error.body["message"] and "DEEPSEEK_API_KEY" in error.body["message"]
    assert error.response.headers["x-gateway-route"] == "none"
    assert error.response.headers["x-gateway-reason"] == "no-backend"


def test_both_tiers_failing_at_runtime_gets_503(gateway, ollama, deepseek):
    ollama.fault("http_500")
    deepseek.fault("http_500")
    with pytest.raises(openai.APIStatusError) as caught:
        gateway.client().chat.completions.create(model="auto", messages=SHORT)
    assert caught.value.status_code == 503
    message = caught.value.body["message"]
    assert "local tier (qwen2.5:7b) failed" in message and "cloud tier (deepseek-chat) also failed" in message


def test_ollama_dying_is_marked_down_at_once_and_recovers(deepseek, tmp_path):
    from emulators import ollama as ollama_emulator
    from emulators._common import serve_in_thread

    server = serve_in_thread(ollama_emulator.create_app())
    port = server.port
    gw = Gateway("ollama-dies", {"OLLAMA_URL": server.url, "DEEPSEEK_URL": deepseek.url, "DEEPSEEK_API_KEY": DEEPSEEK_KEY},
                 config=write_config(tmp_path, health_interval_seconds=2)).wait_ready()
    try:
        client = gw.client()
        assert route_of(client.chat.completions.with_raw_response.create(model="auto", messages=SHORT)) == ("local", "simple")
        server.stop()
        first = client.chat.completions.with_raw_response.create(model="auto", messages=SHORT)
        second = client.chat.completions.with_raw_response.create(model="auto", messages=SHORT)
        assert route_of(first) == ("cloud", "local-error-fallback")
        assert route_of(second) == ("cloud", "local-unavailable")  # no request pays for the dead Ollama again
        server = serve_in_thread(ollama_emulator.create_app(), port=port)
        deadline = time.monotonic() + 10
        while httpx.get(f"{gw.url}/health").json()["ollama"] != "connected" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert route_of(client.chat.completions.with_raw_response.create(model="auto", messages=SHORT)) == ("local", "simple")
    finally:
        gw.stop()
        server.stop()
