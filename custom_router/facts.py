"""What a request is, measured without a tokenizer: pure functions, O(size of the request).

`request_facts` reads a body once (characters, UTF-8 bytes of everything the model reads,
the kinds it needs: tools, a forced tool call, json_schema, vision), whichever endpoint it came to: chat's
`messages`, the Responses API's `instructions` + `input` (a string, or items: messages, function
calls and their outputs; `text.format` json_schema; `max_output_tokens`), or the legacy
completions `prompt` (a string or a list of them). The estimates plan the context window
conservatively (`prompt_tokens`, `needed_context`, `fits`) and recognize a prompt Ollama cut
(`looks_truncated`). `messages_request_facts` measures an Anthropic Messages body the same way
(its `system`, text, image, tool_use and tool_result blocks, and its tools), so `auto` and the
thresholds mean the same on /v1/messages as on chat.
How it fails: it never raises; a malformed body measures as empty.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from custom_router.data import REQUEST_NEEDS, ModelEntry, Policy, RequestFacts


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "replace"))


def _text_length(content: object) -> tuple[int, int, bool]:
    """Characters and UTF-8 bytes of text in a message's content, and whether it carries an image."""
    if isinstance(content, str):
        return len(content), _utf8_len(content), False
    if not isinstance(content, list):
        return 0, 0, False
    chars, size, image = 0, 0, False
    for part in content:
        if isinstance(part, dict):
            text = part.get("text")
            if isinstance(text, str):
                chars += len(text)
                size += _utf8_len(text)
            image = image or part.get("type") in ("image_url", "input_image", "image")
    return chars, size, image


def forces_tool(tool_choice: object) -> bool:
    """`required`, a named function (OpenAI), or `any` / a named tool (Anthropic): the model must call a tool."""
    if isinstance(tool_choice, dict):
        return tool_choice.get("type") in ("function", "any", "tool")
    return tool_choice == "required"


def _json_size(value: object) -> int:
    """Rough UTF-8 size of a JSON value (tool schemas, response schemas) without serializing it."""
    if isinstance(value, str):
        return _utf8_len(value) + 2
    if isinstance(value, dict):
        return sum(_json_size(k) + _json_size(v) + 2 for k, v in value.items()) + 2
    if isinstance(value, list):
        return sum(_json_size(v) + 1 for v in value) + 2
    return 6


def _item_text(item: dict) -> object:
    """The text a Responses API input item puts before the model: a message's content, a function
    call's arguments, a tool's output."""
    if "content" in item:
        return item.get("content")
    parts = [item.get(k) for k in ("name", "arguments", "output") if isinstance(item.get(k), str)]
    return " ".join(parts)


def conversation(body: Mapping[str, object]) -> list:
    """The request as chat-like messages, for measuring only: `messages` (chat), else `instructions`
    + `input` (Responses API), else `prompt` (legacy completions; token-id prompts measure as empty)."""
    messages = body.get("messages")
    if isinstance(messages, list):
        return messages
    out: list = []
    if isinstance(body.get("instructions"), str):
        out.append({"role": "system", "content": body["instructions"]})
    items = body.get("input")
    if isinstance(items, str):
        out.append({"role": "user", "content": items})
    elif isinstance(items, list):
        out += [{"content": _item_text(item)} for item in items if isinstance(item, dict)]
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        out.append({"role": "user", "content": prompt})
    elif isinstance(prompt, list):
        out += [{"role": "user", "content": p} for p in prompt if isinstance(p, str)]
    return out


def _schema_of(body: Mapping[str, object]) -> object:
    """The JSON schema a request asks the reply to match (chat's response_format, Responses' text.format), or None."""
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        return response_format.get("json_schema") or {}
    text = body.get("text")
    fmt = text.get("format") if isinstance(text, dict) else None
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        return fmt.get("schema") or {}
    return None


def request_facts(body: Mapping[str, object]) -> RequestFacts:
    """Measure a chat, Responses or completions request: O(size of the request), no tokenizer."""
    messages = conversation(body)
    chars, size, kinds = 0, 0, set()
    for message in messages:
        if isinstance(message, dict):
            n, b, image = _text_length(message.get("content"))
            chars += n
            size += b
            if image:
                kinds.add("vision")
    tools = body.get("tools") or body.get("functions")
    if tools:
        kinds.add("tools")
        size += _json_size(tools)
        if forces_tool(body.get("tool_choice")):
            kinds.add("tool_choice")
    schema = _schema_of(body)
    if schema is not None:
        kinds.add("json_schema")
        size += _json_size(schema)
    param = next(
        (name for name in ("max_completion_tokens", "max_tokens", "max_output_tokens") if body.get(name)), "max_tokens"
    )
    max_tokens = body.get(param)
    return RequestFacts(
        model=str(body.get("model", "")),
        chars=chars,
        messages=len(messages),
        max_tokens=max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else None,
        max_tokens_param=param,
        kinds=frozenset(kinds),
        prompt_bytes=size,
    )


def estimate_tokens(facts: RequestFacts, policy: Policy) -> int:
    """Tokens for the complexity threshold (in tokens): the configured characters per token."""
    return int(facts.chars / policy.chars_per_token) + 4 * facts.messages


def prompt_tokens(facts: RequestFacts, policy: Policy) -> int:
    """A conservative prompt size for context planning: system prompt, messages and schemas included."""
    return int(max(facts.prompt_bytes, facts.chars) / policy.bytes_per_token) + 8 * facts.messages + 16


def needed_context(facts: RequestFacts, policy: Policy) -> int:
    """Prompt plus the room the answer needs: what `num_ctx` must hold."""
    return prompt_tokens(facts, policy) + (facts.max_tokens or policy.output_reserve_tokens)


def looks_truncated(facts: RequestFacts, evaluated: int, bytes_per_token_max: float = 6.0) -> bool:
    """Ollama's prompt_eval_count far below the prompt sent: it cut the prompt (server/prompt.go drops old
    messages, the runner trims the rest). No tokenizer in use averages more than ~6 UTF-8 bytes per
    token over a prompt, so fewer tokens than bytes/6 means part of it was never read."""
    return 0 < evaluated < max(facts.prompt_bytes, facts.chars) / bytes_per_token_max


def fits(entry: ModelEntry, facts: RequestFacts, policy: Policy) -> bool:
    return needed_context(facts, policy) <= entry.context_window


def can_serve(entry: ModelEntry, facts: RequestFacts) -> bool:
    return (facts.kinds & REQUEST_NEEDS) <= entry.capabilities


def _anthropic_parts(content: object) -> object:
    """Anthropic content blocks as chat content parts, for measuring: text and images as they are,
    tool results' content inline, tool calls' input and thinking as text."""
    if not isinstance(content, list):
        return content
    parts: list[object] = []
    for block in content:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "tool_result":
            inner = _anthropic_parts(block.get("content"))
            parts += (
                inner
                if isinstance(inner, list)
                else [{"type": "text", "text": inner if isinstance(inner, str) else ""}]
            )
        elif kind == "tool_use":
            parts.append({"type": "text", "text": json.dumps(block.get("input"), default=str)})
        elif kind == "thinking":
            parts.append({"type": "text", "text": str(block.get("thinking") or "")})
        else:
            parts.append(block)
    return parts


def messages_request_facts(body: Mapping[str, object]) -> RequestFacts:
    """Measure an Anthropic Messages request (/v1/messages) as `request_facts` measures chat."""
    system = body.get("system")
    messages: list[object] = [{"role": "system", "content": _anthropic_parts(system)}] if system else []
    raw = body.get("messages")
    for message in raw if isinstance(raw, list) else []:
        if isinstance(message, dict):
            messages.append({**message, "content": _anthropic_parts(message.get("content"))})
    return request_facts({"model": body.get("model", ""), "messages": messages, "tools": body.get("tools"),
                          "tool_choice": body.get("tool_choice"), "max_tokens": body.get("max_tokens")})
