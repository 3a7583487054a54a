"""Corrections of LiteLLM 1.108.7 behaviour that would lose what the client asked for.

Like proxy_config.tuning's shims, each one rebinds one attribute of a LiteLLM class, checks its
target first, and is applied once per worker from tuning.apply (its name in the startup line);
tests/proxy_config/test_litellm_fixes.py checks it against the pinned version.

- `inline-thinking`: Ollama releases before 0.12.4 (and models whose template has no thinking
  field) stream reasoning inline, `<think>` ... `</think>`, in `message.content`. LiteLLM's stream
  parser for Ollama (`OllamaChatCompletionResponseIterator.chunk_parser`) ends the reasoning at
  the first content chunk after `<think>`, so the thinking reaches the client as answer text.
  The fix rewrites each inline chunk into the field form (`message.thinking`, Ollama >= 0.12.4),
  which the parser handles correctly; field-form streams pass unchanged.
- `completion-text`: a legacy `/v1/completions` stream's last chunk (the one with the
  finish_reason) carries `"text": null`, because `TextCompletionStreamWrapper` copies the chat
  delta's `content`, which is None on the final chunk. OpenAI always sends a string there, and
  clients that concatenate it (the `llm` CLI: "can only concatenate str (not "NoneType") to
  str") crash. The fix makes a missing text "".
How it fails: a target that is missing or changed is not patched and the startup line says so
(the stream then behaves as LiteLLM's does); the rewrite itself never raises.
"""

from __future__ import annotations

import functools

OPEN, CLOSE = "<think>", "</think>"


def split_thinking(state: dict, message: dict) -> None:
    """Move inline `<think>` text of one streamed Ollama message into `thinking`, in place.

    `state["inside"]` carries whether the stream is inside a think block between chunks."""
    content = message.get("content")
    if not isinstance(content, str) or message.get("thinking") or not (state.get("inside") or OPEN in content):
        return
    thinking, answer = "", ""
    rest = content
    while rest:
        if state.get("inside"):
            before, found, rest = rest.partition(CLOSE)
            thinking += before
            state["inside"] = not found
        else:
            before, found, rest = rest.partition(OPEN)
            answer += before
            state["inside"] = bool(found)
    message["content"] = answer
    if thinking:
        message["thinking"] = thinking


def split_inline_thinking() -> bool:
    from litellm.llms.ollama.chat.transformation import OllamaChatCompletionResponseIterator as iterator

    original = iterator.chunk_parser
    if getattr(original, "_gateway_inline_thinking", False):
        return True

    @functools.wraps(original)
    def chunk_parser(self, chunk, *args, **kwargs):
        message = chunk.get("message") if isinstance(chunk, dict) else None
        if isinstance(message, dict):
            state = getattr(self, "_gateway_think_state", None)
            if state is None:
                state = {}
                self._gateway_think_state = state
            split_thinking(state, message)
        return original(self, chunk, *args, **kwargs)

    chunk_parser._gateway_inline_thinking = True
    iterator.chunk_parser = chunk_parser
    return True


def text_never_null() -> bool:
    from litellm.utils import TextCompletionStreamWrapper as wrapper

    original = wrapper.convert_to_text_completion_object
    if getattr(original, "_gateway_text_never_null", False):
        return True

    @functools.wraps(original)
    def convert_to_text_completion_object(self, chunk, *args, **kwargs):
        response = original(self, chunk, *args, **kwargs)
        for choice in response.get("choices") or ():
            if choice.get("text") is None:
                choice["text"] = ""
        return response

    convert_to_text_completion_object._gateway_text_never_null = True
    wrapper.convert_to_text_completion_object = convert_to_text_completion_object
    return True
