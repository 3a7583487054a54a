"""The openai SDK (2.x) against `gateway serve`: chat (plain and streamed), `parse()` and embeddings,
with a client key, on a healthy Ollama and with Ollama failing (the cloud serves as a fallback)."""

from __future__ import annotations

import openai
import pytest
from pydantic import BaseModel

from tests.clients.conftest import CLIENT_KEY

ASK = [{"role": "user", "content": "Which city has the Louvre?"}]


class Place(BaseModel):
    city: str
    population: int


def test_chat_answers_with_the_route_in_its_headers(clients_gateway, ollama_state):
    raw = clients_gateway.client(CLIENT_KEY).chat.completions.with_raw_response.create(model="auto", messages=ASK)
    completion = raw.parse()
    assert (raw.headers["x-gateway-route"], raw.headers["x-gateway-reason"]) == ollama_state.expected
    assert completion.model == ollama_state.served_by
    assert completion.choices[0].message.content.startswith(f"Hello from {ollama_state.served_by}")


def test_chat_stream_answers_with_the_route_in_its_headers(clients_gateway, ollama_state):
    client = clients_gateway.client(CLIENT_KEY)
    with client.chat.completions.with_streaming_response.create(model="auto", messages=ASK, stream=True) as raw:
        text = "".join(chunk.choices[0].delta.content or "" for chunk in raw.parse() if chunk.choices)
        assert (raw.headers["x-gateway-route"], raw.headers["x-gateway-reason"]) == ollama_state.expected
    assert text.startswith(f"Hello from {ollama_state.served_by}")


def test_parse_returns_the_pydantic_model_on_either_tier(clients_gateway, ollama, ollama_state):
    raw = clients_gateway.client(CLIENT_KEY).chat.completions.with_raw_response.parse(
        model="auto", messages=ASK, response_format=Place)
    assert (raw.headers["x-gateway-route"], raw.headers["x-gateway-reason"]) == ollama_state.expected
    assert isinstance(raw.parse().choices[0].message.parsed, Place)


def test_embeddings_are_local_and_a_failing_ollama_is_a_503_not_a_substitute(clients_gateway, ollama, ollama_state):
    client = clients_gateway.client(CLIENT_KEY)
    if ollama_state.failing:
        with pytest.raises(openai.APIStatusError) as caught:
            client.embeddings.create(model="nomic-embed-text", input=["hello", "world"])
        assert caught.value.status_code == 503
        assert caught.value.response.headers["x-gateway-reason"] == "embedding"
        return
    raw = client.embeddings.with_raw_response.create(model="nomic-embed-text", input=["hello", "world"])
    assert (raw.headers["x-gateway-route"], raw.headers["x-gateway-reason"]) == ("local", "embedding")
    vectors = [item.embedding for item in raw.parse().data]
    assert len(vectors) == 2 and len(vectors[0]) == len(vectors[1]) > 0 and vectors[0] != vectors[1]
