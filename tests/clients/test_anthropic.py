"""Issue 13: Anthropic's Messages API (/v1/messages) through the routing policy, with the anthropic SDK and a
client key against `gateway serve` on the emulators (DeepSeek's Anthropic endpoint: emulators/deepseek_anthropic.py).

Each test asserts the answer, the route headers and, where it applies, the fallback with Ollama failing."""

from __future__ import annotations

import re
import sqlite3
import time

import anthropic
import httpx
import pytest

from tests.harness import DEEPSEEK_KEY, Gateway

CLIENT_KEY = "sk-client-anthropic-3f9a1c7e5b2d4a6c8e0f"
HELLO = [{"role": "user", "content": "Hello"}]
WEATHER = {"name": "get_weather", "description": "Weather in a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


@pytest.fixture(scope="module")
def gw(ollama, deepseek):
    gateway = Gateway("anthropic", {"OLLAMA_URL": ollama.url, "DEEPSEEK_URL": deepseek.url,
                                    "DEEPSEEK_API_KEY": DEEPSEEK_KEY, "API_KEYS": CLIENT_KEY})
    yield gateway.wait_ready()
    gateway.stop()


@pytest.fixture()
def client(gw) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key=CLIENT_KEY, max_retries=0)


def route_of(headers) -> tuple[str, str]:
    return headers["x-gateway-route"], headers["x-gateway-reason"]


def requests_total(gw, **labels: str) -> float:
    text = httpx.get(f"{gw.url}/metrics").text
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    match = re.search(r"^gateway_requests_total\{" + re.escape(wanted) + r"\} ([0-9.]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def test_a_client_key_gets_a_local_answer_for_auto_with_route_headers_limits_and_metrics(gw, client, ollama):
    before = requests_total(gw, model="qwen2.5:7b", reason="simple", route="local", status="200")
    raw = client.messages.with_raw_response.create(model="auto", max_tokens=100, messages=HELLO)
    message = raw.parse()
    assert route_of(raw.headers) == ("local", "simple")
    assert message.model == "qwen2.5:7b"  # the group that served, not LiteLLM's provider/model
    assert message.content[0].text.startswith("Hello from qwen2.5:7b")
    assert message.stop_reason == "end_turn" and message.usage.output_tokens > 0
    assert int(raw.headers["x-ratelimit-limit-requests"]) - int(raw.headers["x-ratelimit-remaining-requests"]) >= 1
    assert not [h for h in raw.headers if h.startswith(("x-litellm-", "llm_provider-"))]  # no internal URLs
    assert ollama.chats("qwen2.5:7b") == 1
    assert ollama.stats()["last_options"]["qwen2.5:7b"]["num_ctx"] == 8192  # shaped like chat: no silent truncation
    assert requests_total(gw, model="qwen2.5:7b", reason="simple", route="local", status="200") == before + 1


def ledger_row(gw, request_id: str) -> dict | None:
    """The ledger's record of one request (written off the request path: polled for up to 10 s)."""
    deadline = time.monotonic() + 10
    path = gw.cwd / "data" / "ledger.sqlite3"
    while time.monotonic() < deadline:
        try:  # the ledger creates its file, folder and table on its first write
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
                db.row_factory = sqlite3.Row
                row = db.execute("SELECT * FROM gateway_requests WHERE request_id = ?", (request_id,)).fetchone()
        except sqlite3.OperationalError:
            row = None
        if row is not None:
            return dict(row)
        time.sleep(0.2)
    return None


def test_a_cloud_stream_is_in_the_ledger_with_its_key_tokens_and_cost(gw, client):
    with client.messages.stream(model="deepseek-chat", max_tokens=100, messages=HELLO) as stream:
        stream.get_final_message()
        request_id = stream.response.headers["x-request-id"]
    row = ledger_row(gw, request_id)
    assert row is not None
    assert (row["route"], row["reason"], row["served_model"], row["status"], row["stream"]) == (
        "cloud", "explicit", "deepseek-chat", 200, 1)
    assert row["key_hash"].startswith("sha256:") and row["prompt_tokens"] > 0 and row["completion_tokens"] > 0
    assert row["cost_usd"] > 0


def test_a_named_cloud_model_goes_to_deepseeks_anthropic_endpoint(client, deepseek, ollama):
    raw = client.messages.with_raw_response.create(model="deepseek-chat", max_tokens=100, system="Be brief.",
                                                   messages=HELLO)
    assert route_of(raw.headers) == ("cloud", "explicit")
    assert raw.parse().content[0].text.startswith("Hello from deepseek-chat")
    assert deepseek.stats()["requests"] == {"/anthropic/v1/messages": 1}  # native Messages, not translated
    assert deepseek.stats()["last_request_by_model"]["deepseek-chat"]["system"] == "Be brief."
    assert ollama.chats() == 0


def test_a_long_prompt_goes_to_the_cloud_as_on_chat(client, deepseek):
    raw = client.messages.with_raw_response.create(model="auto", max_tokens=100, system="Review: " + "x" * 700,
                                                   messages=HELLO)
    assert route_of(raw.headers) == ("cloud", "complexity")
    assert raw.parse().model == "deepseek-chat"
    assert deepseek.chats("deepseek-chat") == 1


def test_a_stream_carries_route_headers_and_ends_with_message_stop(client):
    with client.messages.stream(model="auto", max_tokens=100, messages=HELLO) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
        headers = stream.response.headers
    assert route_of(headers) == ("local", "simple")
    assert text.startswith("Hello from qwen2.5:7b") and final.stop_reason == "end_turn"
    assert not [h for h in headers if h.startswith(("x-litellm-", "llm_provider-"))]


def test_tools_stay_local_and_a_tool_result_turn_is_answered(client, ollama):
    raw = client.messages.with_raw_response.create(model="auto", max_tokens=200, tools=[WEATHER],
                                                   messages=[{"role": "user", "content": "Weather in Paris?"}])
    message = raw.parse()
    assert route_of(raw.headers) == ("local", "simple")
    call = next(block for block in message.content if block.type == "tool_use")
    assert call.name == "get_weather" and message.stop_reason == "tool_use"
    assert ollama.stats()["last_request_by_model"]["qwen2.5:7b"]["tools"][0]["function"]["name"] == "get_weather"
    follow_up = client.messages.create(model="auto", max_tokens=200, tools=[WEATHER], messages=[
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": call.id, "name": call.name, "input": call.input}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "18 C, sunny"}]}])
    assert follow_up.content and follow_up.stop_reason in ("end_turn", "tool_use")
    assert ollama.chats("qwen2.5:7b") == 2


def test_a_forced_tool_call_goes_to_a_model_that_can_force_one(client, ollama, deepseek):
    raw = client.messages.with_raw_response.create(model="auto", max_tokens=200, tools=[WEATHER],
                                                   tool_choice={"type": "any"}, messages=HELLO)
    assert route_of(raw.headers) == ("cloud", "capability")
    assert deepseek.stats()["last_request_by_model"]["deepseek-chat"]["tool_choice"] == {"type": "any"}
    assert ollama.chats() == 0
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(model="qwen2.5:7b", max_tokens=200, tools=[WEATHER], tool_choice={"type": "any"},
                               messages=HELLO)
    assert caught.value.body["error"]["code"] == "model_not_capable"
    assert "deepseek-chat" in caught.value.body["error"]["message"]


@pytest.mark.parametrize("stream", [False, True])
def test_ollama_failing_falls_back_to_the_cloud(client, ollama, deepseek, stream):
    ollama.fault("http_500")
    if stream:
        with client.messages.stream(model="auto", max_tokens=100, messages=HELLO) as s:
            text, headers = "".join(s.text_stream), s.response.headers
    else:
        raw = client.messages.with_raw_response.create(model="auto", max_tokens=100, messages=HELLO)
        text, headers = raw.parse().content[0].text, raw.headers
    assert route_of(headers) == ("cloud", "local-error-fallback")
    assert text.startswith("Hello from deepseek-chat")
    assert deepseek.stats()["requests"] == {"/anthropic/v1/messages": 1}


def test_both_tiers_failing_is_a_503_in_anthropics_shape_naming_both_with_route_none(client, ollama, deepseek):
    ollama.fault("http_500")
    deepseek.fault("http_500")
    with pytest.raises(anthropic.InternalServerError) as caught:
        client.messages.create(model="auto", max_tokens=100, messages=HELLO)
    error = caught.value
    assert error.status_code == 503
    assert error.body["type"] == "error" and error.body["error"]["type"] == "overloaded_error"
    assert error.body["error"]["message"].startswith("Both tiers failed. local tier (qwen2.5:7b) failed")
    assert "cloud tier (deepseek-chat) also failed" in error.body["error"]["message"]
    assert route_of(error.response.headers) == ("none", "local-error-fallback")  # nothing served it; local was tried first


def test_a_stream_that_breaks_midway_ends_with_a_clean_error_event(client, ollama):
    ollama.fault("error_mid_stream")
    with pytest.raises(anthropic.APIStatusError) as caught:
        with client.messages.stream(model="auto", max_tokens=100, messages=HELLO) as stream:
            for _ in stream.text_stream:
                pass
    message = caught.value.body["error"]["message"]
    assert message.startswith("The stream failed after it had started, so the response is incomplete:")
    assert "llama runner process has terminated" in message
    assert "KeyError" not in message and "litellm" not in message.lower()


def test_key_and_model_errors_are_in_anthropics_shape(gw, client):
    with pytest.raises(anthropic.AuthenticationError) as caught:
        anthropic.Anthropic(base_url=gw.url, api_key="sk-wrong-0000000000000000", max_retries=0).messages.create(
            model="auto", max_tokens=10, messages=HELLO)
    assert caught.value.body["error"]["type"] == "authentication_error"
    assert caught.value.body["error"]["code"] == "invalid_api_key"
    with pytest.raises(anthropic.NotFoundError) as caught:
        client.messages.create(model="claude-3-5-sonnet-latest", max_tokens=10, messages=HELLO)
    assert caught.value.body["error"]["code"] == "model_not_found"
    assert "GET /v1/models" in caught.value.body["error"]["message"]


def test_count_tokens_answers_a_client_key_without_calling_a_backend(client, ollama, deepseek):
    counted = client.messages.count_tokens(model="auto", messages=HELLO)
    assert counted.input_tokens > 0
    assert (ollama.chats(), deepseek.stats()["requests"]) == (0, {})
