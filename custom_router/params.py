"""What a request must look like for the model that serves it: pure functions, no I/O.

The router may try more than one model for a request (the fallback to the other tier), so these
run once per attempt, for the model of that attempt (hooks.routing's deployment hook):
- a local model gets `num_ctx`, the window the policy planned with, so Ollama never falls back to
  its own default and silently cuts a longer prompt;
- `max_tokens` above a cloud model's limit is clamped to it (the policy already refused it with a
  400 when the client named that model itself), and the clamp is reported;
- `think` / `reasoning_effort` go only to models that think; elsewhere they are dropped and the
  drop is reported;
- what Ollama cannot honour is taken out and reported (x-gateway-dropped-params): `logprobs` and
  `top_logprobs` (LiteLLM 1.108.7 does not pass them to Ollama), `n` above 1 (one choice comes back;
  the front door refuses `n` > max_n_local for local models and `auto`, so only a fallback from the
  cloud gets here), and a forced `tool_choice` (the policy sends `required` / a named function only
  to models with `supports_tool_choice`, so again only when nothing else could serve); `tool_choice:
  "none"` is honoured by not sending the tools, and `auto` is what Ollama does anyway;
- a JSON-schema `response_format` goes to Ollama as is (LiteLLM turns it into `format`); for the
  cloud, which only has `json_object`, it becomes `json_object` plus the schema in a system message
  (which also carries the word "json" DeepSeek requires), and the reply must then be validated.
How it fails: it never raises; a body it does not understand is left as it is.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from custom_router.data import ModelEntry, Tier
from custom_router.facts import forces_tool

THINKING_PARAMS = ("think", "reasoning_effort")
LOGPROB_PARAMS = ("logprobs", "top_logprobs")
SCHEMA_INSTRUCTION = ("Answer with one JSON object only (json), no prose and no code fences. It must be valid against "
                      "this JSON Schema:\n{schema}")


@dataclass
class Adaptation:
    changes: dict[str, object] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)
    clamped: list[str] = field(default_factory=list)
    schema: dict | None = None  # a JSON schema the reply must be checked against (translated json_schema)


def json_schema_of(response_format: object) -> dict | None:
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        return schema if isinstance(schema, dict) else {}
    return None


def with_schema_instruction(messages: list, schema: dict) -> list:
    text = SCHEMA_INSTRUCTION.format(schema=json.dumps(schema, separators=(",", ":")))
    first = messages[0] if messages else None
    if isinstance(first, dict) and first.get("role") == "system" and isinstance(first.get("content"), str):
        return [{**first, "content": f"{first['content']}\n\n{text}"}, *messages[1:]]
    return [{"role": "system", "content": text}, *messages]


def adapt(entry: ModelEntry, body: Mapping[str, object]) -> Adaptation:
    out = Adaptation()
    if entry.tier is Tier.LOCAL:
        out.changes["num_ctx"] = entry.context_window
        _local_only_params(body, out)
    for name in THINKING_PARAMS:  # `think` is Ollama's; DeepSeek's models think (or not) by name
        unsupported = "thinking" not in entry.capabilities or (name == "think" and entry.tier is Tier.CLOUD)
        if unsupported and body.get(name) is not None:
            out.changes[name] = None
            out.dropped.append(name)
    limit = entry.max_output_tokens if entry.tier is Tier.CLOUD else None  # Ollama: the window is the limit
    for name in ("max_tokens", "max_completion_tokens"):
        value = body.get(name)
        if limit and isinstance(value, int) and value > limit:
            out.changes[name] = limit
            out.clamped.append(f"{name}={limit}")
    schema = json_schema_of(body.get("response_format"))
    if schema is not None and entry.tier is Tier.CLOUD:
        messages = body.get("messages")
        out.changes["response_format"] = {"type": "json_object"}
        out.changes["messages"] = with_schema_instruction(messages if isinstance(messages, list) else [], schema)
        out.schema = schema
    return out


def _local_only_params(body: Mapping[str, object], out: Adaptation) -> None:
    """What Ollama cannot honour: dropped and named, or (tool_choice none) honoured another way."""
    for name in LOGPROB_PARAMS:
        if body.get(name) not in (None, False):
            out.changes[name] = None
            out.dropped.append(name)
    n = body.get("n")
    if isinstance(n, int) and not isinstance(n, bool) and n > 1:
        out.changes["n"] = None
        out.dropped.append("n")
    choice = body.get("tool_choice")
    if choice == "none" or (isinstance(choice, dict) and choice.get("type") == "none"):
        out.changes.update({"tools": None, "tool_choice": None, "functions": None})
    elif forces_tool(choice) and (body.get("tools") or body.get("functions")):
        out.changes["tool_choice"] = None
        out.dropped.append("tool_choice")
