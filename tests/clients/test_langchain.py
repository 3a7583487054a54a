"""langchain-openai against `gateway serve`: invoke, stream, bind_tools, with_structured_output (its
default json_schema method), the Responses API (`use_responses_api`) and embeddings, with a client key,
on a healthy Ollama and with Ollama failing."""

from __future__ import annotations

import openai
import pytest
from langchain_openai import ChatOpenAI, OpenAIEmbeddings
from pydantic import BaseModel

from tests.clients.conftest import CLIENT_KEY


class Place(BaseModel):
    city: str
    population: int


def get_weather(city: str) -> str:
    """Weather in a city."""
    return f"Sunny in {city}"


def chat(gateway, routes, **kwargs) -> ChatOpenAI:
    return ChatOpenAI(model="auto", base_url=f"{gateway.url}/v1", api_key=CLIENT_KEY, max_retries=0,
                      http_client=routes.client(), **kwargs)


def test_invoke(clients_gateway, routes, ollama_state):
    message = chat(clients_gateway, routes).invoke("Say hello")
    assert message.content.startswith(f"Hello from {ollama_state.served_by}")
    assert message.response_metadata["model_name"] == ollama_state.served_by
    assert routes.on("/chat/completions") == [ollama_state.expected]


def test_stream(clients_gateway, routes, ollama_state):
    text = "".join(chunk.content for chunk in chat(clients_gateway, routes).stream("Say hello"))
    assert text.startswith(f"Hello from {ollama_state.served_by}")
    assert routes.on("/chat/completions") == [ollama_state.expected]


def test_bind_tools_returns_a_tool_call(clients_gateway, routes, ollama_state):
    message = chat(clients_gateway, routes).bind_tools([get_weather]).invoke("What is the weather in Paris?")
    assert [call["name"] for call in message.tool_calls] == ["get_weather"]
    assert "city" in message.tool_calls[0]["args"]
    assert routes.on("/chat/completions") == [ollama_state.expected]


def test_with_structured_output_returns_the_pydantic_model(clients_gateway, routes, ollama_state):
    place = chat(clients_gateway, routes).with_structured_output(Place).invoke("Which city has the Louvre?")
    assert isinstance(place, Place)
    assert routes.on("/chat/completions") == [ollama_state.expected]


def test_the_responses_api(clients_gateway, routes, ollama_state):
    message = chat(clients_gateway, routes, use_responses_api=True).invoke("Say hello")
    assert message.text.startswith(f"Hello from {ollama_state.served_by}")
    assert routes.on("/responses") == [ollama_state.expected]


def test_embeddings(clients_gateway, routes, ollama_state):
    embeddings = OpenAIEmbeddings(model="nomic-embed-text", base_url=f"{clients_gateway.url}/v1", api_key=CLIENT_KEY,
                                  max_retries=0, http_client=routes.client(),
                                  check_embedding_ctx_length=False)  # tiktoken's OpenAI vocabularies: not this model's
    if ollama_state.failing:  # no cloud embeddings: a 503, never another model's vectors
        with pytest.raises(openai.APIStatusError) as caught:
            embeddings.embed_documents(["hello"])
        assert caught.value.status_code == 503
        assert [reason for _, reason in routes.on("/embeddings")] == ["embedding"]
        return
    vectors = embeddings.embed_documents(["hello", "world"])
    assert len(vectors) == 2 and len(vectors[0]) == 768 and vectors[0] != vectors[1]
    assert len(embeddings.embed_query("hello")) == 768
    assert routes.on("/embeddings") == [("local", "embedding")] * 2
