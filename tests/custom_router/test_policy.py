"""The routing policy with plain data: no server, no mocks."""

from __future__ import annotations

import pytest

from custom_router.policy import (
    BackendState,
    ModelEntry,
    Policy,
    Reason,
    Route,
    Tier,
    decide,
    normalize_tag,
    prompt_tokens,
    request_facts,
)

MODELS = {
    "qwen2.5:7b": ModelEntry("qwen2.5:7b", Tier.LOCAL, "qwen2.5:7b", 8192),
    "deepseek-r1:7b": ModelEntry("deepseek-r1:7b", Tier.LOCAL, "deepseek-r1:7b", 8192),
    "tiny": ModelEntry("tiny", Tier.LOCAL, "tiny", 1000),
    "deepseek-chat": ModelEntry("deepseek-chat", Tier.CLOUD),
    "deepseek-reasoner": ModelEntry("deepseek-reasoner", Tier.CLOUD, fallback="deepseek-r1:7b"),
    "auto": ModelEntry("auto", Tier.AUTO, "qwen2.5:7b"),
}
POLICY = Policy(models=MODELS, local_default="qwen2.5:7b", cloud_default="deepseek-chat",
                cloud_only_kinds=frozenset({"json_schema"}))
ALL_INSTALLED = frozenset({"qwen2.5:7b", "deepseek-r1:7b", "tiny:latest"})
UP = BackendState(ollama_up=True, installed=ALL_INSTALLED, cloud_ready=True)
OLLAMA_DOWN = BackendState(ollama_up=False, local_problem="Ollama at x is unreachable", cloud_ready=True)
NO_KEY = BackendState(ollama_up=True, installed=ALL_INSTALLED, cloud_ready=False, cloud_problem="DEEPSEEK_API_KEY is not set")


def body(model: str, text: str = "hi", **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def route(request: dict, state: BackendState = UP, policy: Policy = POLICY):
    decision = decide(request_facts(request), policy, state)
    return decision.route, decision.model, decision.reason, decision.fallback


def test_short_auto_request_stays_on_the_local_default():
    assert route(body("auto")) == (Route.LOCAL, "qwen2.5:7b", Reason.SIMPLE, "deepseek-chat")


def test_cloud_model_by_name_goes_to_cloud_with_local_fallback():
    assert route(body("deepseek-chat")) == (Route.CLOUD, "deepseek-chat", Reason.EXPLICIT, "qwen2.5:7b")


def test_cloud_model_fallback_can_be_configured_per_model():
    assert route(body("deepseek-reasoner"))[3] == "deepseek-r1:7b"


def test_deepseek_r1_is_local_despite_its_name():
    assert route(body("deepseek-r1:7b"))[:3] == (Route.LOCAL, "deepseek-r1:7b", Reason.SIMPLE)


@pytest.mark.parametrize(("chars", "expected"), [(500, Route.LOCAL), (501, Route.CLOUD)])
def test_threshold_is_strictly_greater_than_500_chars(chars, expected):
    assert route(body("auto", "x" * chars))[0] is expected


def test_threshold_counts_all_message_content_including_text_parts():
    request = {"model": "auto", "messages": [
        {"role": "system", "content": "s" * 300},
        {"role": "user", "content": [{"type": "text", "text": "u" * 201}]},
    ]}
    assert route(request)[2] is Reason.COMPLEXITY


def test_threshold_in_tokens():
    policy = Policy(models=MODELS, local_default="qwen2.5:7b", cloud_default="deepseek-chat",
                    complexity_threshold=100, complexity_unit="tokens")
    assert route(body("auto", "x" * 380), policy=policy)[2] is Reason.SIMPLE  # 95 + 4 tokens
    assert route(body("auto", "x" * 400), policy=policy)[2] is Reason.COMPLEXITY  # 100 + 4 tokens


def test_prompt_plus_max_tokens_over_context_window_goes_to_cloud():
    # "hi" plans as 24 tokens (2 bytes / 3.5, 8 per message, 16 of template); tiny's window is 1000.
    assert route(body("tiny", max_tokens=977))[2] is Reason.CONTEXT_WINDOW
    assert route(body("tiny", max_tokens=976))[2] is Reason.SIMPLE
    assert route(body("tiny", "x" * 400))[2] is Reason.SIMPLE  # 114 + 24 + 256 reserved output tokens


def test_context_planning_counts_utf8_bytes_and_tool_schemas():
    ascii_facts = request_facts(body("auto", "x" * 300))
    cjk_facts = request_facts(body("auto", "中" * 300))
    assert (ascii_facts.prompt_bytes, cjk_facts.prompt_bytes) == (300, 900)
    assert prompt_tokens(cjk_facts, POLICY) == 257 + 24  # 900 bytes / 3.5: above Qwen's ~1.4 characters per token
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    assert request_facts(body("auto", "x" * 300, tools=tools)).prompt_bytes > 300 + 40


def test_configured_cloud_only_kind_goes_to_cloud():
    request = body("auto", response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {}}})
    assert route(request)[:3] == (Route.CLOUD, "deepseek-chat", Reason.CLOUD_ONLY)
    assert route(body("auto", tools=[{"type": "function"}]))[2] is Reason.SIMPLE  # tools not configured


def test_ollama_down_sends_local_requests_to_cloud_without_local_fallback():
    assert route(body("qwen2.5:7b"), OLLAMA_DOWN) == (Route.CLOUD, "deepseek-chat", Reason.LOCAL_UNAVAILABLE, None)


def test_model_not_installed_goes_to_cloud():
    state = BackendState(ollama_up=True, installed=frozenset({"qwen2.5:7b"}), cloud_ready=True)
    assert route(body("deepseek-r1:7b"), state)[2] is Reason.LOCAL_UNAVAILABLE


def test_complex_request_without_cloud_key_stays_local():
    assert route(body("auto", "x" * 600), NO_KEY) == (Route.LOCAL, "qwen2.5:7b", Reason.CLOUD_UNAVAILABLE, None)


def test_cloud_model_without_key_is_served_by_its_local_fallback():
    assert route(body("deepseek-reasoner"), NO_KEY)[:3] == (Route.LOCAL, "deepseek-r1:7b", Reason.CLOUD_UNAVAILABLE)


def test_nothing_available_names_both_causes():
    state = BackendState(ollama_up=False, local_problem="Ollama at x is unreachable", cloud_ready=False,
                         cloud_problem="DEEPSEEK_API_KEY is not set")
    decision = decide(request_facts(body("auto")), POLICY, state)
    assert (decision.route, decision.reason) == (Route.NONE, Reason.NO_BACKEND)
    assert "Ollama at x is unreachable" in decision.detail and "DEEPSEEK_API_KEY" in decision.detail


def test_unknown_model_is_left_to_litellm():
    assert decide(request_facts(body("gpt-4o")), POLICY, UP) is None


def test_request_facts_tolerates_garbage():
    facts = request_facts({"model": "auto", "messages": "nope", "max_tokens": "12"})
    assert (facts.chars, facts.messages, facts.max_tokens) == (0, 0, None)


def test_vision_parts_are_detected():
    request = {"model": "auto", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:,"}}]}]}
    assert request_facts(request).kinds == frozenset({"vision"})


def test_normalize_tag_adds_latest():
    assert (normalize_tag("llama3.2"), normalize_tag("qwen2.5:7b")) == ("llama3.2:latest", "qwen2.5:7b")
