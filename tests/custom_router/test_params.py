"""Per-model request shaping (custom_router.params), with plain data."""

from __future__ import annotations

import json

from custom_router.params import adapt
from custom_router.policy import ModelEntry, Tier

QWEN = ModelEntry("qwen2.5:7b", Tier.LOCAL, "qwen2.5:7b", 8192, capabilities=frozenset({"tools", "json_schema"}),
                  max_output_tokens=4096)
R1 = ModelEntry("deepseek-r1:7b", Tier.LOCAL, "deepseek-r1:7b", 8192, capabilities=frozenset({"thinking"}))
CHAT = ModelEntry("deepseek-chat", Tier.CLOUD, context_window=131072, capabilities=frozenset({"tools", "json_schema"}),
                  max_output_tokens=8192)
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
STRUCTURED = {"type": "json_schema", "json_schema": {"name": "place", "schema": SCHEMA}}


def test_every_local_request_carries_the_planned_window_as_num_ctx():
    assert adapt(QWEN, {"messages": []}).changes == {"num_ctx": 8192}
    assert "num_ctx" not in adapt(CHAT, {"messages": []}).changes


def test_cloud_max_tokens_over_the_limit_is_clamped_and_reported_local_is_not():
    change = adapt(CHAT, {"max_tokens": 10000})
    assert (change.changes["max_tokens"], change.clamped) == (8192, ["max_tokens=8192"])
    assert adapt(QWEN, {"max_tokens": 10000}).clamped == []


def test_thinking_parameters_go_only_to_thinking_models():
    assert adapt(R1, {"think": False}).dropped == []
    change = adapt(QWEN, {"think": True, "reasoning_effort": "high"})
    assert (change.changes, change.dropped) == ({"num_ctx": 8192, "think": None, "reasoning_effort": None},
                                                ["think", "reasoning_effort"])


def test_json_schema_for_the_cloud_becomes_json_object_with_the_schema_in_a_system_message():
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Where is the Louvre?"}]
    change = adapt(CHAT, {"messages": messages, "response_format": STRUCTURED})
    assert change.changes["response_format"] == {"type": "json_object"}
    system = change.changes["messages"][0]
    assert system["content"].startswith("Be brief.\n\nAnswer with one JSON object only (json)")
    assert json.dumps(SCHEMA, separators=(",", ":")) in system["content"]
    assert change.changes["messages"][1:] == messages[1:] and change.schema == SCHEMA
    local = adapt(QWEN, {"messages": messages, "response_format": STRUCTURED})
    assert "response_format" not in local.changes and local.schema is None  # Ollama takes the schema as `format`


def test_what_ollama_cannot_honour_is_dropped_and_named_and_the_cloud_keeps_it():
    body = {"logprobs": True, "top_logprobs": 2, "n": 3, "tools": [{"type": "function"}], "tool_choice": "required"}
    change = adapt(QWEN, body)
    assert change.dropped == ["logprobs", "top_logprobs", "n", "tool_choice"]
    assert {k: change.changes[k] for k in ("logprobs", "top_logprobs", "n", "tool_choice")} == dict.fromkeys(
        ("logprobs", "top_logprobs", "n", "tool_choice"))
    assert adapt(CHAT, body).dropped == []
    assert adapt(QWEN, {"logprobs": False, "n": 1, "tool_choice": "auto", "tools": [{}]}).dropped == []


def test_tool_choice_none_is_honoured_locally_by_not_sending_the_tools():
    change = adapt(QWEN, {"tools": [{"type": "function"}], "tool_choice": "none"})
    assert (change.changes["tools"], change.changes["tool_choice"], change.dropped) == (None, None, [])
    assert adapt(QWEN, {"tools": [{"name": "f"}], "tool_choice": {"type": "none"}}).changes["tools"] is None  # Anthropic's
