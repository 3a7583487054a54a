"""What the Ollama emulator generates for one /api/chat request, and how fast.

Owns `OllamaConfig` (the switches of `POST /_emulator/config` and the CLI),
`evaluated_tokens` (context truncation), `generate` (content, thinking, tool
calls, JSON) and the wire bodies built from its result.

Behaviour and sources (Ollama, github.com/ollama/ollama):
- Context: `num_ctx` is the request's `options.num_ctx`, else the server's
  `OLLAMA_CONTEXT_LENGTH` (envconfig/config.go; 4096 in older releases, now
  chosen by VRAM) -> `context_length`.  A longer prompt is cut silently:
  server/prompt.go chatPrompt drops the oldest messages (keeping system
  messages and always the last message) until the prompt fits num_ctx, then
  llm/llama_server.go trims a prompt still over num_ctx - 1 tokens to
  num_ctx - max((num_ctx - num_keep) / 2, 1) tokens (num_keep = options.num_keep,
  default 4 in api/types.go, +1 for BOS).  `prompt_eval_count` reports the
  tokens evaluated, so it is lower than what was sent.  Token rule: see
  emulators._content (ceil(utf-8 bytes / 4) + 4 per message, plus tools).
- Thinking: since 0.12.4 a model with the thinking capability defaults to
  `think: true` (routes.go ChatHandler) and its reasoning comes back in
  `message.thinking`, never as `<think>` tags in the content; `think: false`
  turns it off.  `think_format: "inline"` models releases before 0.9, which put
  `<think>...</think>` in front of the content and had no `think` field.
- `format`: "json" returns a JSON object as the content; a JSON schema returns
  content valid against it (a minimal instance, emulators._content).
- Tools: with `tools` the answer is `message.tool_calls`
  ([{"id", "function": {"index", "name", "arguments": {...}}}], api/types.go)
  for the first tool, arguments generated from its parameter schema, when the
  last message is the user's; after a `tool` message it answers text.
- `options.num_predict` caps the answer, `done_reason: "length"`.
- Speed: `load_seconds` before a cold model's first token,
  `prompt_tokens_per_second` for prompt evaluation, `tokens_per_second` per
  generated token (0 = instant); the `*_duration` fields report those times,
  so eval_count / eval_duration is the configured rate.

How it fails: `OllamaConfig.validate` raises ValueError naming the bad
setting; `generate` never raises on odd request fields (they were validated
by the endpoint or fall back to defaults).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from emulators._responses import StreamPlan
from emulators._content import (
    DEFAULT_WORDS, REASONING_TEXT, count_message_tokens, count_tool_tokens, count_words,
    instance_of, make_reply, split_chunks,
)
from emulators.ollama_models import spec_of

__all__ = ["RUNNER_ERROR", "THINK_VALUES", "OllamaConfig", "evaluated_tokens", "generate",
           "ndjson", "nonstream_body", "options_of", "stream_plan", "timings"]

RUNNER_ERROR = "llama runner process has terminated: exit status 2"
THINK_VALUES = (True, "low", "medium", "high", "max")


@dataclass(frozen=True)
class OllamaConfig:
    num_parallel: int = 4              # OLLAMA_NUM_PARALLEL (real default 1; the role sets 2)
    max_queue: int = 512               # OLLAMA_MAX_QUEUE
    tokens_per_second: float = 0.0     # per stream; 0 = no delay
    prompt_tokens_per_second: float = 0.0
    load_seconds: float = 0.0          # cold load before a model's first token
    reply_tokens: int | None = None    # words in a plain answer; None = 3 + DEFAULT_WORDS
    context_length: int = 4096         # OLLAMA_CONTEXT_LENGTH
    think_format: str = "field"        # "field" (>= 0.12.4) or "inline" (<think> tags)

    def validate(self) -> None:
        if self.num_parallel < 1 or self.max_queue < 0 or self.context_length < 8:
            raise ValueError("num_parallel must be >= 1, max_queue >= 0, context_length >= 8")
        if min(self.tokens_per_second, self.prompt_tokens_per_second, self.load_seconds) < 0:
            raise ValueError("tokens_per_second, prompt_tokens_per_second, load_seconds "
                             "must be >= 0")
        if self.reply_tokens is not None and self.reply_tokens < 3:
            raise ValueError("reply_tokens must be >= 3 (\"Hello from MODEL.\") or null")
        if self.think_format not in ("field", "inline"):
            raise ValueError('think_format must be "field" or "inline"')


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def options_of(body: dict) -> dict:
    options = body.get("options")
    return options if isinstance(options, dict) else {}


def _int_option(options: dict, key: str) -> int | None:
    value = options.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def evaluated_tokens(messages: list[dict], tools: Any, num_ctx: int, num_keep: int = 4) -> int:
    """Tokens Ollama evaluates of a prompt after its silent truncation (module docstring)."""
    def tokens(msgs: list[dict]) -> int:
        return sum(count_message_tokens(m) for m in msgs) + count_tool_tokens(tools)

    count = tokens(messages)
    for i in range(1, len(messages)):               # prompt.go: drop from the front
        if count <= num_ctx:
            break
        system = [m for m in messages[:i] if m.get("role") == "system"]
        count = tokens(system + messages[i:])
    if count > num_ctx - 1:                          # llama_server.go: trim the rest
        keep = min(max(num_keep, 0) + 1, num_ctx - 1)
        count = min(count, num_ctx - max((num_ctx - keep) // 2, 1))
    return count


def thinking_on(body: dict, model: str) -> bool:
    think = body.get("think")
    return "thinking" in spec_of(model).capabilities and (think is None or think in THINK_VALUES)


def _tool_calls(tools: list) -> list[dict]:
    tool = tools[0] if isinstance(tools[0], dict) else {}
    function = tool.get("function") if isinstance(tool.get("function"), dict) else {}
    arguments = instance_of(function.get("parameters") or {"type": "object"})
    return [{"id": f"call_{uuid.uuid4().hex[:8]}",
             "function": {"index": 0, "name": function.get("name", "tool"),
                          "arguments": arguments if isinstance(arguments, dict) else {}}}]


def generate(model: str, body: dict, config: OllamaConfig) -> dict:
    """Deterministic answer: content, thinking, tool_calls, done_reason and counts."""
    options, messages = options_of(body), body.get("messages") or []
    num_predict = _int_option(options, "num_predict")
    num_ctx = _int_option(options, "num_ctx") or config.context_length
    tools, fmt = body.get("tools"), body.get("format")
    tool_calls: list[dict] = []
    if tools and isinstance(tools, list) and messages and messages[-1].get("role") == "user":
        tool_calls, content, done_reason = _tool_calls(tools), "", "stop"
    elif fmt == "json" or isinstance(fmt, dict):
        value = instance_of(fmt) if isinstance(fmt, dict) else {"reply": f"Hello from {model}."}
        pieces = split_chunks(json.dumps(value))
        capped = num_predict is not None and 0 <= num_predict < len(pieces)
        content = "".join(pieces[:num_predict] if capped else pieces)
        done_reason = "length" if capped else "stop"
    else:
        words = DEFAULT_WORDS if config.reply_tokens is None else config.reply_tokens - 3
        content, done_reason = make_reply(model, num_predict, words)
    thinking = REASONING_TEXT if thinking_on(body, model) else ""
    if thinking and config.think_format == "inline":
        content, thinking = f"<think>\n{thinking}\n</think>\n\n{content}", ""
    evals = count_words(thinking) + count_words(content)
    evals += count_words(json.dumps(tool_calls)) if tool_calls else 0
    prompt = evaluated_tokens(messages, tools, num_ctx, _int_option(options, "num_keep") or 4)
    return {"content": content, "thinking": thinking, "tool_calls": tool_calls,
            "done_reason": done_reason, "prompt_eval_count": prompt, "eval_count": evals,
            "num_ctx": num_ctx}


def timings(result: dict, config: OllamaConfig, cold: bool) -> dict:
    """Seconds of load, prompt evaluation and generation for `result`."""
    tps, pps = config.tokens_per_second, config.prompt_tokens_per_second
    return {"load": config.load_seconds if cold else 0.0,
            "prompt": result["prompt_eval_count"] / pps if pps else 0.0,
            "token": 1 / tps if tps else 0.0}


def final_fields(result: dict, times: dict) -> dict:
    """The `done: true` fields; durations (ns) are the paced times, else derived from counts."""
    load = int(times["load"] * 1e9) or 1_000_000
    prompt_ns = int(times["prompt"] * 1e9) or result["prompt_eval_count"] * 500_000
    eval_ns = int(times["token"] * result["eval_count"] * 1e9) or result["eval_count"] * 10_000_000
    return {"done_reason": result["done_reason"], "done": True,
            "total_duration": load + prompt_ns + eval_ns, "load_duration": load,
            "prompt_eval_count": result["prompt_eval_count"],
            "prompt_eval_duration": prompt_ns,
            "eval_count": result["eval_count"], "eval_duration": eval_ns}


def ndjson(obj: dict) -> bytes:
    return json.dumps(obj).encode() + b"\n"


def stream_plan(model: str, result: dict, times: dict) -> StreamPlan:
    def line(message: dict, **extra: Any) -> bytes:
        return ndjson({"model": model, "created_at": now_iso(),
                       "message": {"role": "assistant", **message}, **extra})

    chunks = [line({"content": "", "thinking": w}, done=False)
              for w in split_chunks(result["thinking"])]
    chunks += [line({"content": w}, done=False) for w in split_chunks(result["content"])]
    if result["tool_calls"]:
        chunks.append(line({"content": "", "tool_calls": result["tool_calls"]}, done=False))
    return StreamPlan(chunks=chunks, tail=[line({"content": ""}, **final_fields(result, times))],
                      error=ndjson({"error": RUNNER_ERROR}),
                      malformed=f'{{"model": "{model}", "message": {{\n'.encode())


def nonstream_body(model: str, result: dict, times: dict) -> dict:
    message: dict[str, Any] = {"role": "assistant", "content": result["content"]}
    if result["thinking"]:
        message["thinking"] = result["thinking"]
    if result["tool_calls"]:
        message["tool_calls"] = result["tool_calls"]
    return {"model": model, "created_at": now_iso(), "message": message,
            **final_fields(result, times)}
