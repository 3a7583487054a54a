"""The openai SDK's legacy completions (`/v1/completions`) against `gateway serve`: routed like chat,
and a stream whose every chunk carries a text string (the `llm` CLI concatenates them)."""

from __future__ import annotations

from tests.clients.conftest import CLIENT_KEY


def test_completion_answers_with_the_route_in_its_headers(clients_gateway, ollama_state):
    raw = clients_gateway.client(CLIENT_KEY).completions.with_raw_response.create(model="auto", prompt="Say hello")
    completion = raw.parse()
    assert (raw.headers["x-gateway-route"], raw.headers["x-gateway-reason"]) == ollama_state.expected
    assert completion.model == ollama_state.served_by
    assert completion.choices[0].text.startswith(f"Hello from {ollama_state.served_by}")


def test_completion_stream_chunks_all_carry_text_and_the_last_one_finishes(clients_gateway, ollama_state):
    client = clients_gateway.client(CLIENT_KEY)
    with client.completions.with_streaming_response.create(model="auto", prompt="Say hello", stream=True) as raw:
        chunks = [chunk for chunk in raw.parse() if chunk.choices]
        assert (raw.headers["x-gateway-route"], raw.headers["x-gateway-reason"]) == ollama_state.expected
    text = ""
    for chunk in chunks:
        text += chunk.choices[0].text  # what the `llm` CLI does: a None here was its TypeError
    assert text.startswith(f"Hello from {ollama_state.served_by}")
    assert chunks[-1].choices[0].finish_reason == "stop" and chunks[-1].choices[0].text == ""


def test_a_long_prompt_goes_to_the_cloud(clients_gateway, deepseek):
    prompt = "Summarise: " + "the quick brown fox jumps over the lazy dog. " * 15
    raw = clients_gateway.client(CLIENT_KEY).completions.with_raw_response.create(model="auto", prompt=prompt)
    assert (raw.headers["x-gateway-route"], raw.headers["x-gateway-reason"]) == ("cloud", "complexity")
    assert raw.parse().model == "deepseek-chat" and deepseek.chats("deepseek-chat") == 1
