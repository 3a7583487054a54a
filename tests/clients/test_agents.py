"""openai-agents against `gateway serve`: an agent with a function tool on both of the SDK's model APIs
(OpenAIResponsesModel, its default, and OpenAIChatCompletionsModel), with a client key, on a healthy
Ollama and with Ollama failing. The agent's two model calls (the tool call, then the answer after the
tool's output) each go through the routing policy."""

from __future__ import annotations

import pytest
from agents import Agent, OpenAIChatCompletionsModel, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled
from openai import AsyncOpenAI

from tests.clients.conftest import CLIENT_KEY

MODELS = {"responses": (OpenAIResponsesModel, "/responses"), "chat": (OpenAIChatCompletionsModel, "/chat/completions")}


@pytest.fixture(autouse=True)
def no_tracing():
    set_tracing_disabled(True)  # the SDK would export traces to OpenAI


@pytest.mark.parametrize("api", MODELS)
def test_an_agent_calls_its_function_tool_and_answers(clients_gateway, routes, ollama_state, api):
    calls: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """Weather in a city."""
        calls.append(city)
        return f"Sunny in {city}"

    model_class, path = MODELS[api]
    client = AsyncOpenAI(base_url=f"{clients_gateway.url}/v1", api_key=CLIENT_KEY, max_retries=0,
                         http_client=routes.async_client())
    agent = Agent(name="weather", instructions="Answer with the weather tool.", tools=[get_weather],
                  model=model_class(model="auto", openai_client=client))
    result = Runner.run_sync(agent, "What is the weather in Paris?")
    assert len(calls) == 1 and isinstance(calls[0], str)  # the model's tool call ran the Python function
    assert result.final_output.startswith(f"Hello from {ollama_state.served_by}")
    assert routes.on(path) == [ollama_state.expected] * 2  # the tool call, then the answer after its output
