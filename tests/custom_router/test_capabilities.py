"""Capability-aware routing, output limits, context-safe fallbacks and denied clouds, with plain data."""

from __future__ import annotations

from custom_router.policy import (
    BackendState,
    ModelEntry,
    Policy,
    Reason,
    Route,
    Tier,
    decide,
    request_facts,
)

CHAT = frozenset({"tools", "json_schema"})
MODELS = {
    "qwen2.5:7b": ModelEntry("qwen2.5:7b", Tier.LOCAL, "qwen2.5:7b", 8192, capabilities=CHAT, max_output_tokens=4096),
    "deepseek-r1:7b": ModelEntry("deepseek-r1:7b", Tier.LOCAL, "deepseek-r1:7b", 8192,
                                 capabilities=frozenset({"json_schema", "thinking"}), max_output_tokens=4096),
    "deepseek-chat": ModelEntry("deepseek-chat", Tier.CLOUD, context_window=131072, capabilities=CHAT,
                                max_output_tokens=8192),
    "deepseek-reasoner": ModelEntry("deepseek-reasoner", Tier.CLOUD, context_window=131072, fallback="deepseek-r1:7b",
                                    capabilities=CHAT | {"thinking"}, max_output_tokens=65536),
    "auto": ModelEntry("auto", Tier.AUTO, "qwen2.5:7b", 8192, capabilities=CHAT, max_output_tokens=4096),
}
POLICY = Policy(models=MODELS, local_default="qwen2.5:7b", cloud_default="deepseek-chat")
UP = BackendState(ollama_up=True, installed=frozenset({"qwen2.5:7b", "deepseek-r1:7b"}), cloud_ready=True)
NO_KEY = BackendState(ollama_up=True, installed=UP.installed, cloud_ready=False, cloud_problem="DEEPSEEK_API_KEY is not set")
TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}]
IMAGE = [{"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]


def body(model: str, text: object = "hi", **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def decision(request: dict, state: BackendState = UP, policy: Policy = POLICY, **facts):
    from dataclasses import replace

    return decide(replace(request_facts(request), **facts), policy, state)


def test_tools_on_a_model_without_tools_are_served_by_a_capable_local_model():
    d = decision(body("deepseek-r1:7b", tools=TOOLS))
    assert (d.route, d.model, d.reason, d.fallback) == (Route.LOCAL, "qwen2.5:7b", Reason.CAPABILITY, "deepseek-chat")


def test_reasoner_fallback_skips_the_local_model_without_tools():
    assert decision(body("deepseek-reasoner", tools=TOOLS)).fallback == "qwen2.5:7b"
    assert decision(body("deepseek-reasoner")).fallback == "deepseek-r1:7b"


def test_an_image_no_model_takes_is_refused_with_a_400_reason():
    d = decision(body("auto", IMAGE))
    assert (d.route, d.reason) == (Route.NONE, Reason.CAPABILITY)
    assert "does not support vision" in d.detail and "config.yaml" in d.detail


def test_auto_with_an_image_picks_the_vision_model():
    models = {**MODELS, "qwen2.5vl:7b": ModelEntry("qwen2.5vl:7b", Tier.LOCAL, "qwen2.5vl:7b", 8192,
                                                   capabilities=CHAT | {"vision"})}
    state = BackendState(ollama_up=True, installed=UP.installed | {"qwen2.5vl:7b"}, cloud_ready=True)
    d = decision(body("auto", IMAGE), state, Policy(models=models, local_default="qwen2.5:7b", cloud_default="deepseek-chat"))
    assert (d.route, d.model, d.fallback) == (Route.LOCAL, "qwen2.5vl:7b", None)  # no cloud model takes images


def test_named_model_over_its_output_limit_gets_a_400_naming_the_limit():
    d = decision(body("deepseek-chat", max_tokens=10000))
    assert (d.route, d.reason) == (Route.NONE, Reason.OUTPUT_LIMIT)
    assert "8192" in d.detail


def test_auto_with_a_large_max_tokens_goes_to_the_cloud_and_is_not_refused():
    d = decision(body("auto", "x" * 600, max_tokens=10000))
    assert (d.route, d.model, d.reason, d.fallback) == (Route.CLOUD, "deepseek-chat", Reason.COMPLEXITY, None)


def test_a_prompt_no_local_model_holds_never_gets_a_local_fallback():
    huge = "word " * 40000  # ~67k tokens planned
    d = decision(body("deepseek-chat", huge))
    assert (d.route, d.fallback) == (Route.CLOUD, None)
    d = decision(body("auto", huge), NO_KEY)
    assert (d.route, d.reason) == (Route.NONE, Reason.NO_BACKEND)
    assert "does not fit qwen2.5:7b's context window (8192)" in d.detail and "DEEPSEEK_API_KEY" in d.detail


def test_over_budget_complex_request_is_served_locally_with_reason_budget():
    d = decision(body("auto", "x" * 600), cloud_denied=Reason.BUDGET)
    assert (d.route, d.model, d.reason, d.fallback) == (Route.LOCAL, "qwen2.5:7b", Reason.BUDGET, None)


def test_over_budget_cloud_only_request_is_refused_with_reason_budget():
    huge = "word " * 40000
    d = decision(body("auto", huge), cloud_denied=Reason.BUDGET)
    assert (d.route, d.reason) == (Route.NONE, Reason.BUDGET)
    assert "budget" in d.detail


def test_local_only_request_never_gets_a_cloud_fallback():
    d = decision(body("auto"), cloud_denied=Reason.LOCAL_ONLY)
    assert (d.route, d.fallback) == (Route.LOCAL, None)
    down = BackendState(ollama_up=False, local_problem="Ollama at x is unreachable", cloud_ready=True)
    d = decision(body("auto"), down, cloud_denied=Reason.LOCAL_ONLY)
    assert (d.route, d.reason) == (Route.NONE, Reason.LOCAL_ONLY)
    assert "local-only" in d.detail and "Ollama at x is unreachable" in d.detail


def test_json_schema_stays_local_by_default():
    request = body("auto", response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}})
    d = decision(request)
    assert (d.route, d.model, d.reason) == (Route.LOCAL, "qwen2.5:7b", Reason.SIMPLE)


def test_a_busy_local_tier_spills_auto_to_the_cloud_but_not_named_local_models():
    busy = BackendState(ollama_up=True, installed=UP.installed, cloud_ready=True, local_wait={"qwen2.5:7b": 12.0})
    policy = Policy(models=MODELS, local_default="qwen2.5:7b", cloud_default="deepseek-chat", local_max_wait_seconds=5)
    d = decision(body("auto"), busy, policy)
    assert (d.route, d.model, d.reason, d.fallback) == (Route.CLOUD, "deepseek-chat", Reason.LOCAL_BUSY, "qwen2.5:7b")
    assert decision(body("qwen2.5:7b"), busy, policy).route is Route.LOCAL
    assert decision(body("auto"), busy, policy, cloud_denied=Reason.LOCAL_ONLY).route is Route.LOCAL
    calm = BackendState(ollama_up=True, installed=UP.installed, cloud_ready=True, local_wait={"qwen2.5:7b": 4.0})
    assert decision(body("auto"), calm, policy).reason is Reason.SIMPLE


def test_a_prompt_evaluated_far_below_its_size_looks_truncated():
    from custom_router.policy import looks_truncated

    facts = request_facts(body("auto", "word " * 4000))  # 20,000 bytes: at least ~3,333 tokens in any tokenizer
    assert looks_truncated(facts, 2048)
    assert not looks_truncated(facts, 4100)
    assert not looks_truncated(facts, 0)  # no usage reported: nothing known


def test_a_missing_fallback_says_why():
    huge = "word " * 40000
    assert "do not fit qwen2.5:7b's context window (8192)" in decision(body("auto", huge)).no_fallback
    assert "no installed local model can take over" in decision(body("deepseek-chat", huge)).no_fallback
    assert decision(body("auto", "x" * 600)).no_fallback == ""


EMBED = ModelEntry("nomic-embed-text", Tier.LOCAL, "nomic-embed-text", 2048, capabilities=frozenset(), mode="embedding")
WITH_EMBED = Policy(models={**MODELS, "nomic-embed-text": EMBED}, local_default="qwen2.5:7b", cloud_default="deepseek-chat")


def test_embeddings_are_local_only_and_say_so_when_ollama_cannot_serve():
    from custom_router.policy import decide_embedding

    installed = BackendState(ollama_up=True, installed=UP.installed | {"nomic-embed-text:latest"}, cloud_ready=True)
    assert decide_embedding("nomic-embed-text", WITH_EMBED, installed) == \
        decision_of(Route.LOCAL, "nomic-embed-text", Reason.EMBEDDING)
    down = BackendState(ollama_up=False, local_problem="Ollama at x is unreachable", cloud_ready=True)
    refused = decide_embedding("nomic-embed-text", WITH_EMBED, down)
    assert (refused.route, refused.reason) == (Route.NONE, Reason.NO_BACKEND)
    assert "DeepSeek has no embeddings API" in refused.detail and "Ollama at x is unreachable" in refused.detail
    wrong = decide_embedding("qwen2.5:7b", WITH_EMBED, installed)
    assert (wrong.reason, wrong.detail) == (Reason.CAPABILITY, "Model qwen2.5:7b does not make embeddings; use nomic-embed-text.")


def test_chat_never_lands_on_an_embedding_model():
    d = decide(request_facts(body("nomic-embed-text")), WITH_EMBED, UP)
    assert (d.route, d.reason) == (Route.NONE, Reason.CAPABILITY) and "/v1/embeddings" in d.detail
    tiny_default = Policy(models={"nomic-embed-text": EMBED, **MODELS}, local_default="nomic-embed-text",
                          cloud_default="deepseek-chat")
    assert decide(request_facts(body("auto")), tiny_default, UP).model == "qwen2.5:7b"


def decision_of(route, model, reason):
    from custom_router.policy import Decision

    return Decision(route, model, reason)


def test_a_named_cloud_model_over_budget_is_refused_not_served_elsewhere():
    d = decision(body("deepseek-chat"), cloud_denied=Reason.BUDGET)
    assert (d.route, d.reason) == (Route.NONE, Reason.BUDGET)
    assert "deepseek-chat is a cloud model and this key's monthly cloud budget is used up" in d.detail
    assert decision(body("deepseek-chat"), cloud_denied=Reason.LOCAL_ONLY).route is Route.LOCAL  # privacy: stays here


def test_a_forced_tool_call_needs_a_model_that_can_force_one_in_both_apis():
    from custom_router.facts import messages_request_facts
    from custom_router.policy import request_facts

    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    assert "tool_choice" in request_facts({"tools": tools, "tool_choice": "required"}).kinds
    assert "tool_choice" in request_facts({"tools": tools, "tool_choice": {"type": "function", "function": {"name": "f"}}}).kinds
    assert "tool_choice" not in request_facts({"tools": tools, "tool_choice": "auto"}).kinds
    anthropic_tools = [{"name": "f", "input_schema": {}}]
    assert "tool_choice" in messages_request_facts({"tools": anthropic_tools, "tool_choice": {"type": "any"}}).kinds
    assert "tool_choice" not in messages_request_facts({"tools": anthropic_tools, "tool_choice": {"type": "auto"}}).kinds


def test_an_anthropic_body_is_measured_like_the_same_chat_body():
    from custom_router.facts import messages_request_facts
    from custom_router.policy import request_facts

    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}
    facts = messages_request_facts({"model": "auto", "system": "s" * 300, "max_tokens": 50, "messages": [
        {"role": "user", "content": [{"type": "text", "text": "t" * 200}, image]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "1", "content": "r" * 100}]}]})
    chat = request_facts({"model": "auto", "max_tokens": 50, "messages": [
        {"role": "system", "content": "s" * 300}, {"role": "user", "content": "t" * 200}, {"role": "user", "content": "r" * 100}]})
    assert (facts.chars, facts.messages, facts.max_tokens) == (chat.chars, chat.messages, 50) == (600, 3, 50)
    assert facts.kinds == {"vision"}
