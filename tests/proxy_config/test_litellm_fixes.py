"""proxy_config.litellm_fixes against the pinned LiteLLM: inline <think> streams keep their reasoning."""

from __future__ import annotations

import pytest
from litellm.llms.ollama.chat.transformation import OllamaChatCompletionResponseIterator

from proxy_config.litellm_fixes import split_inline_thinking, split_thinking

INLINE = ["<think>", "\nLet", " me think.", "\n</think>", "\n\nHello", " there"]


def chunks(pieces: list[str]) -> list[dict]:
    lines = [{"model": "deepseek-r1:7b", "message": {"role": "assistant", "content": p}, "done": False} for p in pieces]
    return lines + [{"model": "deepseek-r1:7b", "message": {"role": "assistant", "content": ""}, "done": True,
                     "done_reason": "stop", "prompt_eval_count": 3, "eval_count": 6}]


def parse(pieces: list[str]) -> tuple[str, str]:
    iterator = OllamaChatCompletionResponseIterator(streaming_response=iter(()), sync_stream=True)
    reasoning, content = "", ""
    for chunk in chunks(pieces):
        delta = iterator.chunk_parser(chunk).choices[0].delta
        reasoning += getattr(delta, "reasoning_content", None) or ""
        content += delta.content or ""
    return reasoning, content


def test_split_thinking_moves_tagged_text_into_the_thinking_field_across_chunks():
    state: dict = {}
    messages = [{"content": piece} for piece in ["a <think>b", "c", "d</think>e"]]
    for message in messages:
        split_thinking(state, message)
    assert messages == [{"content": "a ", "thinking": "b"}, {"content": "", "thinking": "c"},
                        {"content": "e", "thinking": "d"}]
    field_form = {"content": "x", "thinking": "y"}
    split_thinking({}, field_form)
    assert field_form == {"content": "x", "thinking": "y"}


@pytest.mark.filterwarnings("ignore:Item .* is using the `ReadOnly` qualifier:UserWarning")  # pydantic on LiteLLM's types
def test_the_pinned_litellm_loses_inline_reasoning_and_the_fix_keeps_it():
    original = OllamaChatCompletionResponseIterator.chunk_parser
    try:
        if getattr(original, "_gateway_inline_thinking", False):  # applied by an earlier import in this process
            OllamaChatCompletionResponseIterator.chunk_parser = original.__wrapped__
        reasoning, content = parse(INLINE)
        assert reasoning == ""  # LiteLLM 1.108.7: the thinking arrives as answer text
        assert "Let me think." in content
        assert split_inline_thinking() is True
        assert parse(INLINE) == ("\nLet me think.\n", "\n\nHello there")
    finally:
        OllamaChatCompletionResponseIterator.chunk_parser = original


def test_the_pinned_litellm_ends_a_completions_stream_with_null_text_and_the_fix_makes_it_a_string():
    from litellm.types.utils import Delta, ModelResponseStream, StreamingChoices
    from litellm.utils import TextCompletionStreamWrapper

    from proxy_config.litellm_fixes import text_never_null

    last = ModelResponseStream(choices=[StreamingChoices(index=0, delta=Delta(content=None), finish_reason="stop")])
    original = TextCompletionStreamWrapper.convert_to_text_completion_object
    try:
        if getattr(original, "_gateway_text_never_null", False):  # applied by an earlier import in this process
            TextCompletionStreamWrapper.convert_to_text_completion_object = original.__wrapped__
        wrapper = TextCompletionStreamWrapper(completion_stream=iter(()), model="qwen2.5:7b")
        assert wrapper.convert_to_text_completion_object(last)["choices"][0]["text"] is None  # LiteLLM 1.108.7
        assert text_never_null() is True
        converted = wrapper.convert_to_text_completion_object(last)["choices"][0]
        assert (converted["text"], converted["finish_reason"]) == ("", "stop")
    finally:
        TextCompletionStreamWrapper.convert_to_text_completion_object = original
