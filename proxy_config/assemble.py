"""What counts as progress in a backend's stream, and the non-streaming reply a stream amounts to.

Two wire formats, line by line (proxy_config.deadlines reads the lines):
- `ollama`: Ollama's `/api/chat` NDJSON. Each line is `{"message": {"content", "thinking",
  "tool_calls"}, "done": false}`; the last has `done: true` with `done_reason` and the counts
  (`prompt_eval_count`, `eval_count`, durations), and the non-streaming reply is that last object
  with the whole `message` and all `logprobs` (Ollama `server/routes.go`, ChatHandler: the
  non-streaming answer is built the same way from the same responses). An error after the start is an `{"error"}` line.
- `openai`: DeepSeek's SSE (`data: {chat.completion.chunk}` events, `: keep-alive` comments while
  queued, `data: [DONE]` at the end; DeepSeek API docs, "Create Chat Completion" and "Rate
  Limit"). The non-streaming reply is a `chat.completion` whose message joins the deltas'
  `content` and `reasoning_content`, merges `tool_calls` by index and joins `logprobs.content`;
  `usage` comes from the final chunk (the request asks for it with `stream_options.include_usage`).

Progress is a real token: non-empty content, reasoning/thinking or a tool call, or the backend's
end or error. Keep-alive comments, blank lines and empty deltas (a role alone) are not. Once the
first token is in, a streamed line counts when it carries any data (`is_data`), which spares a
JSON parse per token; keep-alives and blank lines still do not count.

How it fails: a line that is not JSON, or a stream that ends without the backend's end marker,
raises `StreamBroken` from the assembler (the caller makes it a connection error, so the other
tier serves the request). For `is_progress` a line it cannot parse counts as progress, so that
LiteLLM, not the deadline, reports it.
"""

from __future__ import annotations

import json


class StreamBroken(Exception):
    """The stream cannot be assembled into a complete reply."""


def _json(line: bytes, fmt: str) -> object:
    """The JSON object a line carries; None for a line without one (blank, comment, other SSE field)."""
    text = line.strip()
    if fmt == "openai":
        if not text.startswith(b"data:"):
            return None
        text = text[len(b"data:"):].strip()
        if text == b"[DONE]":
            return "[DONE]"
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return ValueError


def _carries_token(obj: object, fmt: str) -> bool:
    if not isinstance(obj, dict) or "error" in obj:
        return True
    if fmt == "ollama":
        message = obj.get("message") or {}
        return bool(obj.get("done") or message.get("content") or message.get("thinking") or message.get("tool_calls"))
    for choice in obj.get("choices") or []:
        delta = choice.get("delta") or {}
        if (choice.get("finish_reason") or delta.get("content") or delta.get("reasoning_content")
                or delta.get("tool_calls")):
            return True
    return bool(obj.get("usage")) and not obj.get("choices")


def is_progress(line: bytes, fmt: str) -> bool:
    obj = _json(line, fmt)
    return obj is not None and _carries_token(obj, fmt)


def is_data(line: bytes) -> bool:
    """After the first token, progress is any line with data: no JSON parsing on every line of a
    long stream. Blank lines and SSE comments (`: keep-alive`) still do not count."""
    text = line.strip()
    return bool(text) and not text.startswith(b":")


class Assembler:
    backend = "the backend"

    def __init__(self) -> None:
        self.error: dict | None = None

    def add(self, line: bytes) -> bool:
        """Take one line; True when it is progress."""
        obj = _json(line, self.fmt)
        if obj is None:
            return False
        if obj is ValueError or not isinstance(obj, (dict, str)):
            raise StreamBroken(f"{self.backend} sent a stream line that is not JSON")
        if isinstance(obj, dict) and "error" in obj:
            self.error = obj
        elif self.error is None:
            self.take(obj)
        return _carries_token(obj, self.fmt)

    def result(self) -> tuple[int, dict]:
        """(status, body) of the non-streaming reply; an error line becomes a 500 with its body."""
        if self.error is not None:
            return 500, self.error
        return 200, self.body()


class OllamaAssembler(Assembler):
    fmt, backend = "ollama", "Ollama"

    def __init__(self) -> None:
        super().__init__()
        self.content: list[str] = []
        self.thinking: list[str] = []
        self.tool_calls: list = []
        self.logprobs: list = []
        self.final: dict | None = None

    def take(self, obj: dict) -> None:
        message = obj.get("message") or {}
        self.content.append(message.get("content") or "")
        self.thinking.append(message.get("thinking") or "")
        self.tool_calls.extend(message.get("tool_calls") or [])
        self.logprobs.extend(obj.get("logprobs") or [])
        if obj.get("done"):
            self.final = obj

    def body(self) -> dict:
        if self.final is None:
            raise StreamBroken("Ollama ended its stream without finishing it (no `done` line)")
        message = {**(self.final.get("message") or {}), "role": "assistant", "content": "".join(self.content)}
        if any(self.thinking):
            message["thinking"] = "".join(self.thinking)
        if self.tool_calls:
            message["tool_calls"] = self.tool_calls
        body = {**self.final, "message": message}
        if self.logprobs:
            body["logprobs"] = self.logprobs
        return body


class OpenAIAssembler(Assembler):
    fmt, backend = "openai", "DeepSeek"

    def __init__(self) -> None:
        super().__init__()
        self.head: dict = {}
        self.usage: dict | None = None
        self.choices: dict[int, dict] = {}
        self.done = False

    def take(self, obj: dict | str) -> None:
        if obj == "[DONE]":
            self.done = True
            return
        for key in ("id", "created", "model", "system_fingerprint"):
            if obj.get(key) is not None:
                self.head.setdefault(key, obj[key])
        if obj.get("usage"):
            self.usage = obj["usage"]
        for choice in obj.get("choices") or []:
            state = self.choices.setdefault(choice.get("index", 0), {"content": [], "reasoning": [], "tools": {},
                                                                      "logprobs": [], "finish_reason": None})
            state["logprobs"].extend((choice.get("logprobs") or {}).get("content") or [])
            delta = choice.get("delta") or {}
            state["content"].append(delta.get("content") or "")
            state["reasoning"].append(delta.get("reasoning_content") or "")
            for call in delta.get("tool_calls") or []:
                merged = state["tools"].setdefault(call.get("index", 0), {"id": None, "type": "function",
                                                                          "function": {"name": "", "arguments": ""}})
                merged["id"] = call.get("id") or merged["id"]
                merged["type"] = call.get("type") or merged["type"]
                function = call.get("function") or {}
                merged["function"]["name"] += function.get("name") or ""
                merged["function"]["arguments"] += function.get("arguments") or ""
            if choice.get("finish_reason"):
                state["finish_reason"] = choice["finish_reason"]

    def body(self) -> dict:
        if not self.choices or not all(state["finish_reason"] for state in self.choices.values()):
            raise StreamBroken("DeepSeek ended its stream without finishing it (no finish_reason)")
        choices = []
        for index, state in sorted(self.choices.items()):
            tools = [state["tools"][i] for i in sorted(state["tools"])]
            content = "".join(state["content"])
            message: dict = {"role": "assistant", "content": content if content or not tools else None}
            if any(state["reasoning"]):
                message["reasoning_content"] = "".join(state["reasoning"])
            if tools:
                message["tool_calls"] = tools
            logprobs = {"content": state["logprobs"]} if state["logprobs"] else None
            choices.append({"index": index, "message": message, "logprobs": logprobs,
                            "finish_reason": state["finish_reason"]})
        body = {"id": self.head.get("id"), "object": "chat.completion", "created": self.head.get("created"),
                "model": self.head.get("model"), "choices": choices}
        if "system_fingerprint" in self.head:
            body["system_fingerprint"] = self.head["system_fingerprint"]
        if self.usage is not None:
            body["usage"] = self.usage
        return body


def assembler_for(fmt: str) -> Assembler:
    return OllamaAssembler() if fmt == "ollama" else OpenAIAssembler()
