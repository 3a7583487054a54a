"""Issue 11 acceptance: capability-aware routing, DeepSeek's limits and context safety, with the openai SDK
against `gateway serve` and the realistic emulators (deadlines: tests/reliability/test_deadlines.py)."""

from __future__ import annotations

import json
import time

import httpx
import jsonschema
import openai
import pytest
from pydantic import BaseModel

from tests.harness import DEEPSEEK_KEY, Gateway

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
          "required": ["city", "population"], "additionalProperties": False}
STRUCTURED = {"type": "json_schema", "json_schema": {"name": "place", "strict": True, "schema": SCHEMA}}
ASK = [{"role": "user", "content": "Which city has the Louvre, and how many people live there?"}]
LONG = [{"role": "user", "content": "Explain this log: " + "x" * 600}]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


class Place(BaseModel):
    city: str
    population: int


def route_of(raw) -> tuple[str, str]:
    return raw.headers["x-gateway-route"], raw.headers["x-gateway-reason"]


def sent_to(emulator, model: str) -> dict:
    return emulator.stats()["last_request_by_model"][model]


@pytest.fixture(scope="module")
def roomy(ollama, deepseek):
    """Complexity threshold out of the way: only the context window decides what stays local."""
    gw = Gateway("roomy", {"OLLAMA_URL": ollama.url, "DEEPSEEK_URL": deepseek.url, "DEEPSEEK_API_KEY": DEEPSEEK_KEY,
                           "COMPLEXITY_THRESHOLD": "10000000"})
    yield gw.wait_ready()
    gw.stop()


@pytest.mark.parametrize(("model", "route"), [("auto", "local"), ("qwen2.5:7b", "local"), ("deepseek-chat", "cloud")])
def test_json_schema_is_answered_with_content_valid_against_the_schema(gateway, ollama, deepseek, model, route):
    raw = gateway.client().chat.completions.with_raw_response.create(model=model, messages=ASK, response_format=STRUCTURED)
    assert raw.headers["x-gateway-route"] == route
    jsonschema.validate(json.loads(raw.parse().choices[0].message.content), SCHEMA)
    if route == "local":
        assert sent_to(ollama, "qwen2.5:7b")["format"] == SCHEMA  # Ollama constrains decoding to it
    else:
        sent = sent_to(deepseek, "deepseek-chat")
        assert sent["response_format"] == {"type": "json_object"}  # DeepSeek has no json_schema
        assert json.dumps(SCHEMA, separators=(",", ":")) in sent["messages"][0]["content"]


def test_openai_parse_helper_works_on_both_tiers(gateway, ollama, deepseek):
    for model in ("auto", "deepseek-chat"):
        completion = gateway.client().chat.completions.parse(model=model, messages=ASK, response_format=Place)
        assert isinstance(completion.choices[0].message.parsed, Place)
    assert (ollama.chats("qwen2.5:7b"), deepseek.chats("deepseek-chat")) == (1, 1)


def test_a_cloud_reply_that_ignores_the_schema_is_an_error_not_a_success(gateway, deepseek):
    deepseek.config(follow_schema=False)
    with pytest.raises(openai.APIStatusError) as caught:
        gateway.client().chat.completions.create(model="deepseek-chat", messages=ASK, response_format=STRUCTURED)
    assert caught.value.status_code == 502
    assert caught.value.body["code"] == "schema_mismatch" and "does not match the schema" in caught.value.body["message"]
    with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", timeout=30,
                      headers={"Authorization": f"Bearer {gateway.env['LITELLM_MASTER_KEY']}"},
                      json={"model": "deepseek-chat", "messages": ASK, "response_format": STRUCTURED,
                            "stream": True}) as response:
        events = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert "schema" in json.loads(events[-1][6:])["error"]["message"] and "data: [DONE]" not in events


def test_max_tokens_over_deepseeks_limit_is_clamped_when_the_gateway_chose_the_model(gateway, deepseek):
    raw = gateway.client().chat.completions.with_raw_response.create(model="auto", messages=LONG, max_tokens=10000)
    assert route_of(raw) == ("cloud", "complexity")
    assert raw.headers["x-gateway-clamped"] == "max_tokens=8192"
    assert sent_to(deepseek, "deepseek-chat")["max_tokens"] == 8192


def test_max_tokens_over_a_named_cloud_models_limit_is_a_400_naming_it(gateway, deepseek):
    with pytest.raises(openai.BadRequestError) as caught:
        gateway.client().chat.completions.create(model="deepseek-chat", messages=ASK, max_tokens=10000)
    assert caught.value.body["code"] == "max_tokens_too_large" and caught.value.body["param"] == "max_tokens"
    assert "max_tokens <= 8192" in caught.value.body["message"]
    assert deepseek.chats() == 0


def test_tools_on_auto_go_to_a_tool_capable_model(gateway, ollama):
    raw = gateway.client().chat.completions.with_raw_response.create(model="auto", messages=ASK, tools=TOOLS)
    completion = raw.parse()
    assert route_of(raw) == ("local", "simple") and completion.model == "qwen2.5:7b"
    assert completion.choices[0].message.tool_calls[0].function.name == "get_weather"


def test_tools_on_a_model_without_tools_are_served_by_a_capable_one(gateway, ollama):
    raw = gateway.client().chat.completions.with_raw_response.create(model="deepseek-r1:7b", messages=ASK, tools=TOOLS)
    assert route_of(raw) == ("local", "capability") and raw.parse().model == "qwen2.5:7b"
    assert ollama.chats("deepseek-r1:7b") == 0  # never Ollama's "does not support tools"


def test_reasoner_fallback_with_tools_lands_on_a_tool_capable_local_model(gateway, ollama, deepseek):
    deepseek.fault("http_500")
    raw = gateway.client().chat.completions.with_raw_response.create(model="deepseek-reasoner", messages=ASK, tools=TOOLS)
    assert route_of(raw) == ("local", "cloud-error-fallback") and raw.parse().model == "qwen2.5:7b"
    assert ollama.chats("deepseek-r1:7b") == 0


def test_a_6000_token_prompt_served_locally_carries_a_num_ctx_that_holds_it(roomy, ollama):
    messages = [{"role": "user", "content": "word " * 4800}]  # 24,000 bytes: 6,004 tokens in the emulator
    raw = roomy.client().chat.completions.with_raw_response.create(model="auto", messages=messages)
    usage = raw.parse().usage
    assert route_of(raw) == ("local", "simple")
    assert usage.prompt_tokens == 6004  # all of it was read
    assert sent_to(ollama, "qwen2.5:7b")["options"]["num_ctx"] == 8192 >= usage.prompt_tokens


def test_a_prompt_no_local_model_holds_is_never_answered_locally(roomy, ollama, deepseek):
    deepseek.fault("http_500")
    messages = [{"role": "user", "content": "word " * 32000}]  # 40,000 tokens
    with pytest.raises(openai.APIStatusError) as caught:
        roomy.client().chat.completions.create(model="auto", messages=messages)
    assert caught.value.status_code == 503
    assert "Both tiers failed" in caught.value.body["message"] and "local tier unavailable" in caught.value.body["message"]
    assert ollama.chats() == 0


@pytest.mark.parametrize("think_format", ["field", "inline"])
def test_thinking_reaches_the_client_as_reasoning_content(gateway, ollama, think_format):
    ollama.config(think_format=think_format)
    message = gateway.client().chat.completions.create(model="deepseek-r1:7b", messages=ASK).choices[0].message
    assert message.reasoning_content and "<think>" not in message.content
    stream = gateway.client().chat.completions.create(model="deepseek-r1:7b", messages=ASK, stream=True)
    deltas = [chunk.choices[0].delta for chunk in stream if chunk.choices]
    reasoning = "".join(getattr(d, "reasoning_content", None) or "" for d in deltas)
    content = "".join(d.content or "" for d in deltas)
    assert reasoning and content.lstrip().startswith("Hello from deepseek-r1:7b.") and "<think>" not in content


def test_think_false_is_passed_on_and_think_is_dropped_for_models_that_do_not_think(gateway, ollama):
    message = gateway.client().chat.completions.create(model="deepseek-r1:7b", messages=ASK,
                                                        extra_body={"think": False}).choices[0].message
    assert sent_to(ollama, "deepseek-r1:7b")["think"] is False and not getattr(message, "reasoning_content", None)
    raw = gateway.client().chat.completions.with_raw_response.create(model="qwen2.5:7b", messages=ASK,
                                                                     extra_body={"think": True})
    assert raw.headers["x-gateway-dropped-params"] == "think" and "think" not in sent_to(ollama, "qwen2.5:7b")


def test_embeddings_are_served_locally_and_never_substituted(gateway, ollama, deepseek):
    defaults = ["qwen2.5:7b", "llama3.2:3b", "mistral:7b", "deepseek-r1:7b"]
    with pytest.raises(openai.APIStatusError) as caught:  # not pulled yet: no silent substitute, no cloud
        gateway.client().embeddings.create(model="nomic-embed-text", input="a")
    assert caught.value.status_code == 503
    assert "DeepSeek has no embeddings API" in caught.value.body["message"]
    assert "gateway models pull nomic-embed-text" in caught.value.body["message"]
    httpx.post(f"{ollama.url}/_emulator/models", json={"models": [*defaults, "nomic-embed-text"]}).raise_for_status()
    try:
        time.sleep(6)  # the next health poll (every 5 s) sees it installed
        raw = gateway.client().embeddings.with_raw_response.create(model="nomic-embed-text", input=["a", "b"])
        result = raw.parse()
        assert route_of(raw) == ("local", "embedding")
        assert len(result.data) == 2 and len(result.data[0].embedding) == 768
        assert deepseek.chats() == 0
    finally:
        httpx.post(f"{ollama.url}/_emulator/models", json={"models": defaults}).raise_for_status()
