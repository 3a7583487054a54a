"""proxy_config.assemble: what is progress in a backend's stream, and the reply a stream amounts to.

Plain data: lines as Ollama (`server/routes.go`) and DeepSeek (API docs, "Create Chat Completion",
"Rate Limit") send them.
"""

from __future__ import annotations

import json

import pytest

from proxy_config.assemble import OllamaAssembler, OpenAIAssembler, StreamBroken, is_progress


def ndjson(obj) -> bytes:
    return json.dumps(obj).encode() + b"\n"


def sse(obj) -> bytes:
    return b"data: " + (obj if isinstance(obj, bytes) else json.dumps(obj).encode()) + b"\n"


def chunk(delta=None, finish=None, **extra) -> bytes:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return sse({"id": "c1", "created": 7, "model": "deepseek-chat", "choices": choices, **extra})


@pytest.mark.parametrize("line", [b": keep-alive\n", b"\n", b"\r\n", b"event: ping\n", chunk({"role": "assistant"}),
                                  chunk({"role": "assistant", "content": ""}), chunk({"content": None, "reasoning_content": ""})])
def test_keepalives_blank_lines_and_empty_deltas_are_not_progress_in_sse(line):
    assert is_progress(line, "openai") is False


@pytest.mark.parametrize("line", [chunk({"content": "Hi"}), chunk({"reasoning_content": "Let"}),
                                  chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{"}}]}),
                                  chunk({"content": ""}, "stop"), chunk(None, usage={"total_tokens": 3}),
                                  sse(b"[DONE]"), sse({"error": {"message": "boom"}}), sse(b'{"id": "c1", "choices": [')])
def test_tokens_ends_errors_and_unparseable_lines_are_progress_in_sse(line):
    assert is_progress(line, "openai") is True


@pytest.mark.parametrize("line,progress", [
    (b"\n", False),
    (ndjson({"message": {"role": "assistant", "content": ""}, "done": False}), False),
    (ndjson({"message": {"role": "assistant", "content": "Hi"}, "done": False}), True),
    (ndjson({"message": {"role": "assistant", "content": "", "thinking": "Hmm"}, "done": False}), True),
    (ndjson({"message": {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f"}}]}}), True),
    (ndjson({"message": {"role": "assistant", "content": ""}, "done": True}), True),
    (ndjson({"error": "runner crashed"}), True),
    (b'{"model": "q", "message": \n', True),
])
def test_progress_in_ollama_ndjson(line, progress):
    assert is_progress(line, "ollama") is progress


def test_ollama_stream_assembles_into_the_final_object_with_the_whole_message():
    assembler = OllamaAssembler()
    lines = [ndjson({"model": "q", "message": {"role": "assistant", "content": "", "thinking": "Let me"}, "done": False}),
             ndjson({"model": "q", "message": {"role": "assistant", "content": "", "thinking": " think."}, "done": False}),
             ndjson({"model": "q", "message": {"role": "assistant", "content": "Hello"}, "done": False}),
             ndjson({"model": "q", "message": {"role": "assistant", "content": "",
                                               "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}]},
                     "done": False}),
             ndjson({"model": "q", "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop",
                     "prompt_eval_count": 12, "eval_count": 5, "total_duration": 99})]
    assert [assembler.add(line) for line in lines] == [True] * 5
    assert assembler.result() == (200, {
        "model": "q", "done": True, "done_reason": "stop", "prompt_eval_count": 12, "eval_count": 5, "total_duration": 99,
        "message": {"role": "assistant", "content": "Hello", "thinking": "Let me think.",
                    "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}]}})


def test_ollama_error_line_becomes_a_500_with_ollamas_body():
    assembler = OllamaAssembler()
    assembler.add(ndjson({"model": "q", "message": {"role": "assistant", "content": "Hel"}, "done": False}))
    assembler.add(ndjson({"error": "an error was encountered while running the model"}))
    assert assembler.result() == (500, {"error": "an error was encountered while running the model"})


def test_ollama_stream_without_done_or_with_a_broken_line_cannot_be_assembled():
    assembler = OllamaAssembler()
    assembler.add(ndjson({"model": "q", "message": {"role": "assistant", "content": "Hel"}, "done": False}))
    with pytest.raises(StreamBroken, match="without finishing"):
        assembler.result()
    with pytest.raises(StreamBroken, match="not JSON"):
        OllamaAssembler().add(b'{"model": "q", "message": \n')


def test_deepseek_stream_assembles_into_a_chat_completion():
    assembler = OpenAIAssembler()
    lines = [b": keep-alive\n", b"\n", chunk({"role": "assistant", "content": None, "reasoning_content": "Let"}),
             chunk({"content": None, "reasoning_content": " me."}), chunk({"content": "Hel"}), chunk({"content": "lo"}),
             chunk({"content": ""}, "stop"), chunk(None, usage={"prompt_tokens": 4, "completion_tokens": 3}),
             sse(b"[DONE]")]
    assert [assembler.add(line) for line in lines] == [False, False, True, True, True, True, True, True, True]
    assert assembler.result() == (200, {
        "id": "c1", "object": "chat.completion", "created": 7, "model": "deepseek-chat",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello", "reasoning_content": "Let me."},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 4, "completion_tokens": 3}})


def test_deepseek_tool_call_deltas_are_merged_by_index_and_content_is_null():
    assembler = OpenAIAssembler()
    for line in [chunk({"role": "assistant", "content": None, "tool_calls": [
                     {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}),
                 chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
                 chunk({"tool_calls": [{"index": 1, "id": "call_2", "type": "function",
                                        "function": {"name": "get_time", "arguments": "{}"}}]}),
                 chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
                 chunk({}, "tool_calls"), sse(b"[DONE]")]:
        assembler.add(line)
    status, body = assembler.result()
    assert status == 200 and body["choices"][0]["finish_reason"] == "tool_calls"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
        {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]}


def test_deepseek_error_event_becomes_a_500_and_a_cut_stream_cannot_be_assembled():
    assembler = OpenAIAssembler()
    assembler.add(chunk({"content": "Hel"}))
    assembler.add(sse({"error": {"message": "Internal Server Error", "type": "server_error"}}))
    assert assembler.result() == (500, {"error": {"message": "Internal Server Error", "type": "server_error"}})
    cut = OpenAIAssembler()
    cut.add(chunk({"content": "Hel"}))
    with pytest.raises(StreamBroken, match="without finishing"):
        cut.result()


def test_logprobs_are_joined_in_both_formats():
    ollama = OllamaAssembler()
    ollama.add(ndjson({"message": {"role": "assistant", "content": "Hel"}, "logprobs": [{"token": "Hel", "logprob": -0.1}]}))
    ollama.add(ndjson({"message": {"role": "assistant", "content": "lo"}, "logprobs": [{"token": "lo", "logprob": -0.2}]}))
    ollama.add(ndjson({"message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop"}))
    assert ollama.result()[1]["logprobs"] == [{"token": "Hel", "logprob": -0.1}, {"token": "lo", "logprob": -0.2}]
    deepseek = OpenAIAssembler()
    deepseek.add(sse({"id": "c1", "choices": [{"index": 0, "delta": {"content": "Hel"}, "logprobs": {"content": [{"token": "Hel"}]}}]}))
    deepseek.add(sse({"id": "c1", "choices": [{"index": 0, "delta": {"content": "lo"}, "logprobs": {"content": [{"token": "lo"}]},
                                               "finish_reason": "stop"}]}))
    assert deepseek.result()[1]["choices"][0]["logprobs"] == {"content": [{"token": "Hel"}, {"token": "lo"}]}


@pytest.mark.parametrize("line,data", [(b": keep-alive\n", False), (b"\n", False), (b"  \r\n", False),
                                       (chunk({"content": " word"}), True), (ndjson({"message": {"content": ""}}), True)])
def test_after_the_first_token_any_data_line_counts_but_keepalives_do_not(line, data):
    from proxy_config.assemble import is_data

    assert is_data(line) is data
