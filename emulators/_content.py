"""Deterministic content of the emulators: token counts, replies, JSON instances.

Owns the numbers gateway tests assert against:
- prompt tokens: per message ceil(utf-8 bytes of its text / 4) + 4, where the
  text is the string content or the concatenated `text` parts of a list
  content; plus ceil(utf-8 bytes of the tools' compact JSON / 4) when tools
  are sent.  A gateway that estimates with the same rule (or with more tokens)
  never under-counts what the emulators evaluate.
- completion tokens: whitespace-separated words of the generated text;
- `make_reply`: "Hello from MODEL." plus n filler words, " word" except every
  `VARY_EVERY`th, which is " more": no answer repeats one chunk 100 times in a row.
  LiteLLM aborts a stream that does (REPEATED_STREAMING_CHUNK_LIMIT = 100 in
  litellm/constants.py, its guard against a looping model), and a real answer
  of a few hundred tokens does not;
- `instance_of(schema)`: a minimal JSON value that validates against a JSON
  schema (objects with every listed property, strings, numbers, integers,
  booleans, enums/const, arrays, anyOf/oneOf/allOf, local `$ref`s).

How it fails: nothing here raises on odd input.  A schema part it does not
model (`pattern`, `not`, `if/then`, remote `$ref`) yields a plain value that
may not validate; the emulator's tests cover what is modelled.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Iterable

__all__ = [
    "DEFAULT_WORDS", "REASONING_TEXT", "count_prompt_tokens", "count_text_tokens",
    "count_tool_tokens", "count_words", "instance_of", "make_reply", "message_text",
    "split_chunks",
]

DEFAULT_WORDS = 8
VARY_EVERY = 50  # every 50th filler word differs (see the module docstring)
REASONING_TEXT = "Let me think step by step."


def message_text(content: Any) -> str:
    """Text of a message content: a string or a list of {"type": "text"} parts."""
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content
                       if isinstance(p, dict) and p.get("type") == "text")
    return "" if content is None else str(content)


def count_text_tokens(text: str) -> int:
    return math.ceil(len(text.encode("utf-8", "surrogatepass")) / 4)


def count_message_tokens(message: dict) -> int:
    return count_text_tokens(message_text(message.get("content"))) + 4


def count_tool_tokens(tools: Any) -> int:
    if not tools:
        return 0
    return count_text_tokens(json.dumps(tools, separators=(",", ":"), sort_keys=True))


def count_prompt_tokens(messages: Iterable[dict] | None, tools: Any = None) -> int:
    """sum(ceil(utf-8 bytes / 4) + 4) over messages, plus the tools (module docstring)."""
    return sum(count_message_tokens(m) for m in messages or []) + count_tool_tokens(tools)


def count_words(text: str) -> int:
    return len(text.split())


def make_reply(model: str, max_tokens: Any = None,
               words: int = DEFAULT_WORDS) -> tuple[str, str]:
    """Return (reply, finish_reason): "Hello from MODEL." plus n filler words.

    n is max_tokens when it is an int in [0, words), finish "length";
    otherwise n = words and finish "stop".
    """
    capped = (isinstance(max_tokens, int) and not isinstance(max_tokens, bool)
              and 0 <= max_tokens < words)
    n = max_tokens if capped else words
    filler = "".join(" more" if i % VARY_EVERY == VARY_EVERY - 1 else " word" for i in range(n))
    return f"Hello from {model}." + filler, "length" if capped else "stop"


def split_chunks(text: str) -> list[str]:
    """One piece per word, each keeping its leading whitespace."""
    return re.findall(r"\s*\S+", text)


# ------------------------------------------------------- schema instances
def _resolve(ref: str, root: dict) -> Any:
    node: Any = root
    for part in ref.lstrip("#/").split("/"):
        node = node.get(part, {}) if isinstance(node, dict) else {}
    return node


def _number(schema: dict, integer: bool) -> int | float:
    low = schema.get("minimum", schema.get("exclusiveMinimum"))
    high = schema.get("maximum", schema.get("exclusiveMaximum"))
    value: float = 1
    if low is not None:
        value = low + (1 if "exclusiveMinimum" in schema and "minimum" not in schema else 0)
    if high is not None and value > high:
        value = high - (1 if "exclusiveMaximum" in schema and "maximum" not in schema else 0)
    return int(math.ceil(value)) if integer else float(value)


def _string(schema: dict, name: str) -> str:
    formats = {"date-time": "2024-01-01T00:00:00Z", "date": "2024-01-01", "time": "00:00:00Z",
               "email": "user@example.com", "uri": "https://example.com", "uuid":
               "00000000-0000-4000-8000-000000000000"}
    text = formats.get(schema.get("format", ""), name or "text")
    text = text.ljust(int(schema.get("minLength", 0)), "x")
    return text[:schema["maxLength"]] if "maxLength" in schema else text


def instance_of(schema: Any, root: Any = None, name: str = "value", depth: int = 0) -> Any:
    """A minimal JSON value valid against `schema` (see module docstring)."""
    root = schema if root is None else root
    if not isinstance(schema, dict) or depth > 20:
        return name
    if "$ref" in schema:
        return instance_of(_resolve(schema["$ref"], root), root, name, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return instance_of(schema[key][0], root, name, depth + 1)
    if schema.get("allOf"):
        merged: dict = {}
        for part in schema["allOf"]:
            part = _resolve(part["$ref"], root) if "$ref" in part else part
            merged.setdefault("properties", {}).update(part.get("properties", {}))
            merged["required"] = merged.get("required", []) + part.get("required", [])
        return instance_of({**schema, **merged, "allOf": None, "type": "object"}, root, name,
                           depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    if kind == "object":
        props = schema.get("properties") or {}
        return {key: instance_of(sub, root, key, depth + 1) for key, sub in props.items()}
    if kind == "array":
        count = max(int(schema.get("minItems", 1)), 0)
        if "maxItems" in schema:
            count = min(count, int(schema["maxItems"]))
        return [instance_of(schema.get("items", {}), root, name, depth + 1) for _ in range(count)]
    if kind in ("integer", "number"):
        return _number(schema, kind == "integer")
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return _string(schema, name)
