"""The openai SDK's Responses API against `gateway serve`: create, stream, `previous_response_id` and
retrieve, on both tiers, with the route headers, the fallback when Ollama fails, and the store's scoping."""

from __future__ import annotations

import openai
import pytest

from tests.clients.conftest import CLIENT_KEY, OTHER_CLIENT_KEY

LONG = "Explain this log line by line: " + "error at step 7; " * 40  # over the 500-character threshold


def route(raw) -> tuple[str, str]:
    return raw.headers["x-gateway-route"], raw.headers["x-gateway-reason"]


def test_create_answers_with_the_route_in_its_headers(clients_gateway, ollama_state):
    raw = clients_gateway.client(CLIENT_KEY).responses.with_raw_response.create(model="auto", input="Say hello")
    response = raw.parse()
    assert route(raw) == ollama_state.expected
    assert response.status == "completed" and response.model == ollama_state.served_by
    assert response.output_text.startswith(f"Hello from {ollama_state.served_by}")


def test_stream_delivers_the_text_and_the_completed_response(clients_gateway, ollama_state):
    client = clients_gateway.client(CLIENT_KEY)
    with client.responses.with_streaming_response.create(model="auto", input="Say hello", stream=True) as raw:
        events = list(raw.parse())
        assert route(raw) == ollama_state.expected
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    completed = [e.response for e in events if e.type == "response.completed"]
    assert deltas.startswith(f"Hello from {ollama_state.served_by}") and completed[0].output_text == deltas
    assert client.responses.retrieve(completed[0].id).output_text == deltas  # stored before the client had it


def test_a_long_input_goes_to_the_cloud(clients_gateway, deepseek):
    raw = clients_gateway.client(CLIENT_KEY).responses.with_raw_response.create(model="auto", input=LONG)
    assert route(raw) == ("cloud", "complexity")
    assert raw.parse().model == "deepseek-chat" and deepseek.chats("deepseek-chat") == 1


def test_a_named_local_model_that_is_not_installed_falls_back_like_chat(clients_gateway, ollama, deepseek):
    ollama.fault("http_404", models=["llama3.2:3b"])  # Ollama: model 'llama3.2:3b' not found
    raw = clients_gateway.client(CLIENT_KEY).responses.with_raw_response.create(model="llama3.2:3b", input="Hi")
    assert route(raw) == ("cloud", "local-error-fallback") and raw.parse().model == "deepseek-chat"


def test_a_failing_cloud_falls_back_to_the_local_tier(clients_gateway, deepseek):
    deepseek.fault("http_500")
    raw = clients_gateway.client(CLIENT_KEY).responses.with_raw_response.create(model="deepseek-chat", input="Hi")
    assert route(raw) == ("local", "cloud-error-fallback") and raw.parse().model == "qwen2.5:7b"


def test_a_conversation_switches_tiers_and_every_turn_reads_the_whole_of_it(clients_gateway, ollama, deepseek):
    client = clients_gateway.client(CLIENT_KEY)
    first = client.responses.with_raw_response.create(model="auto", input="My name is Ada.", instructions="Be brief.")
    assert route(first) == ("local", "simple")
    second = client.responses.with_raw_response.create(model="auto", input=LONG, previous_response_id=first.parse().id)
    assert route(second) == ("cloud", "complexity")
    sent = deepseek.stats()["last_request_by_model"]["deepseek-chat"]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]  # instructions are not carried over, as on OpenAI
    assert sent[0]["content"] == "My name is Ada." and sent[1]["content"].startswith("Hello from qwen2.5:7b")
    assert second.parse().previous_response_id == first.parse().id
    third = client.responses.create(model="auto", input="What is my name?", previous_response_id=second.parse().id)
    assert third.model == "deepseek-chat"  # the whole conversation is long now
    assert len(deepseek.stats()["last_request_by_model"]["deepseek-chat"]["messages"]) == 5
    retrieved = client.responses.retrieve(second.parse().id)
    assert retrieved.output_text == second.parse().output_text and retrieved.model == "deepseek-chat"
    items = client.responses.input_items.list(second.parse().id)
    assert len(items.data) == 3


def test_a_local_turn_after_a_failing_ollama_continues_from_the_cloud_turn(clients_gateway, ollama, ollama_state):
    client = clients_gateway.client(CLIENT_KEY)
    first = client.responses.create(model="auto", input="Remember 42.")
    ollama.reset()  # the next turn finds Ollama healthy
    second = client.responses.with_raw_response.create(model="auto", input="Which number?", previous_response_id=first.id)
    assert route(second) == ("local", "simple")
    sent = ollama.stats()["last_request_by_model"]["qwen2.5:7b"]["messages"]
    assert [m["content"][:20] for m in sent] == ["Remember 42.", f"Hello from {ollama_state.served_by}"[:20], "Which number?"]


def test_another_key_cannot_read_or_continue_a_stored_response(clients_gateway):
    mine = clients_gateway.client(CLIENT_KEY).responses.create(model="auto", input="A secret")
    other = clients_gateway.client(OTHER_CLIENT_KEY)
    with pytest.raises(openai.NotFoundError) as caught:
        other.responses.retrieve(mine.id)
    assert caught.value.body["code"] == "not_found"
    with pytest.raises(openai.NotFoundError) as caught:
        other.responses.create(model="auto", input="Go on", previous_response_id=mine.id)
    assert caught.value.body["code"] == "previous_response_not_found"
    assert caught.value.body["param"] == "previous_response_id"


def test_store_false_is_not_stored_and_delete_removes_a_response(clients_gateway):
    client = clients_gateway.client(CLIENT_KEY)
    unstored = client.responses.create(model="auto", input="Forget me", store=False)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(unstored.id)
    kept = client.responses.create(model="auto", input="Keep me")
    client.responses.delete(kept.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(kept.id)


def test_max_output_tokens_over_a_named_cloud_models_limit_is_a_400_naming_that_field(clients_gateway, deepseek):
    with pytest.raises(openai.BadRequestError) as caught:
        clients_gateway.client(CLIENT_KEY).responses.create(model="deepseek-chat", input="Hi", max_output_tokens=10000)
    assert caught.value.body["code"] == "max_tokens_too_large" and caught.value.body["param"] == "max_output_tokens"
    assert "max_output_tokens <= 8192" in caught.value.body["message"]
    assert deepseek.chats() == 0
