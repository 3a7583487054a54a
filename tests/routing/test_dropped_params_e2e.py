"""Issue 13 point 6: parameters a backend cannot honour are never dropped silently, with the openai SDK
against `gateway serve` on the emulators. The choice per parameter (README "Routing"):
- `logprobs` / `top_logprobs` on a local model: dropped, named in x-gateway-dropped-params;
- `n` > 1 on a local model or `auto`: 400 (max_n_local); on a cloud fallback to a local model: dropped, named;
- `tool_choice` `required` / a named function: only models with supports_tool_choice (`auto` goes to the cloud,
  a named local model gets a 400 naming the ones that can); `none` is honoured locally by not sending the tools."""

from __future__ import annotations

import openai
import pytest

ASK = [{"role": "user", "content": "Hi"}]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


def sent_to(emulator, model: str) -> dict:
    return emulator.stats()["last_request_by_model"][model]


def test_logprobs_on_a_local_model_are_dropped_and_named(gateway, ollama):
    raw = gateway.client().chat.completions.with_raw_response.create(model="qwen2.5:7b", messages=ASK, logprobs=True,
                                                                     top_logprobs=2)
    assert raw.headers["x-gateway-dropped-params"] == "logprobs,top_logprobs"
    assert raw.headers["x-gateway-route"] == "local"
    assert raw.parse().choices[0].logprobs is None
    assert not {"logprobs", "top_logprobs"} & set(sent_to(ollama, "qwen2.5:7b"))


def test_logprobs_on_the_cloud_are_sent_and_nothing_is_named(gateway, deepseek):
    raw = gateway.client().chat.completions.with_raw_response.create(model="deepseek-chat", messages=ASK, logprobs=True)
    assert "x-gateway-dropped-params" not in raw.headers
    assert sent_to(deepseek, "deepseek-chat")["logprobs"] is True


@pytest.mark.parametrize("model", ["auto", "qwen2.5:7b"])
def test_n_over_one_on_the_local_tier_is_a_400_saying_so(gateway, ollama, model):
    with pytest.raises(openai.BadRequestError) as caught:
        gateway.client().chat.completions.create(model=model, messages=ASK, n=2)
    assert caught.value.body["code"] == "n_too_large" and caught.value.body["param"] == "n"
    assert "at most 1" in caught.value.body["message"]
    assert ollama.chats() == 0


def test_a_cloud_request_with_n_that_falls_back_locally_names_the_dropped_n(gateway, ollama, deepseek):
    deepseek.fault("http_500")
    raw = gateway.client().chat.completions.with_raw_response.create(model="deepseek-chat", messages=ASK, n=2)
    assert (raw.headers["x-gateway-route"], raw.headers["x-gateway-reason"]) == ("local", "cloud-error-fallback")
    assert raw.headers["x-gateway-dropped-params"] == "n"
    assert len(raw.parse().choices) == 1
    assert "n" not in sent_to(ollama, "qwen2.5:7b")


def test_tool_choice_required_on_auto_goes_to_a_model_that_can_force_a_call(gateway, ollama, deepseek):
    raw = gateway.client().chat.completions.with_raw_response.create(model="auto", messages=ASK, tools=TOOLS,
                                                                     tool_choice="required")
    assert (raw.headers["x-gateway-route"], raw.headers["x-gateway-reason"]) == ("cloud", "capability")
    assert sent_to(deepseek, "deepseek-chat")["tool_choice"] == "required"
    assert ollama.chats() == 0


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "get_weather"}}])
def test_a_forced_tool_call_on_a_named_local_model_is_a_400_naming_who_can(gateway, ollama, choice):
    with pytest.raises(openai.BadRequestError) as caught:
        gateway.client().chat.completions.create(model="qwen2.5:7b", messages=ASK, tools=TOOLS, tool_choice=choice)
    assert caught.value.body["code"] == "model_not_capable"
    assert "does not support tool_choice" in caught.value.body["message"] and "deepseek-chat" in caught.value.body["message"]
    assert ollama.chats() == 0


def test_tool_choice_none_is_honoured_locally_by_not_sending_the_tools(gateway, ollama):
    raw = gateway.client().chat.completions.with_raw_response.create(model="qwen2.5:7b", messages=ASK, tools=TOOLS,
                                                                     tool_choice="none")
    assert raw.headers["x-gateway-route"] == "local" and "x-gateway-dropped-params" not in raw.headers
    assert raw.parse().choices[0].message.tool_calls is None
    assert "tools" not in sent_to(ollama, "qwen2.5:7b")
