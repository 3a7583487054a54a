"""The DeepSeek emulator behaves like api.deepseek.com (issue 11 points 1-3, tools, n)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import jsonschema
import openai
import pytest

from emulators import serve_in_thread
from emulators import deepseek

KEY = "sk-test-emulator-1234"
USER = [{"role": "user", "content": "Say hello please"}]
TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {
    "type": "object", "required": ["query", "limit"],
    "properties": {"query": {"type": "string"}, "limit": {"type": "integer", "maximum": 0}}}}}


@pytest.fixture(scope="module")
def server():
    running = serve_in_thread(deepseek.create_app(api_key=KEY))
    yield running
    running.stop()


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=10,
                      headers={"Authorization": f"Bearer {KEY}"}) as c:
        c.post("/_emulator/reset").raise_for_status()
        yield c


def chat(client, model="deepseek-chat", messages=USER, **extra):
    return client.post("/chat/completions", json={"model": model, "messages": messages, **extra})


def error_of(response) -> tuple[int, dict]:
    return response.status_code, response.json()["error"]


def invalid(message: str) -> dict:
    return {"message": message, "type": "invalid_request_error", "param": None,
            "code": "invalid_request_error"}


# ---------------------------------------------------------- JSON Output
SCHEMA_FORMAT = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}


def test_json_schema_is_400_unavailable(client):
    assert error_of(chat(client, response_format=SCHEMA_FORMAT)) == (
        400, invalid("This response_format type is unavailable now"))


def test_json_schema_is_422_in_the_older_mode(client):
    client.post("/_emulator/config", json={"json_schema_status": 422}).raise_for_status()
    status, body = error_of(chat(client, response_format=SCHEMA_FORMAT))
    assert status == 422 and "`json_schema` is unavailable now" in body["message"]
    client.post("/_emulator/reset").raise_for_status()
    assert chat(client, response_format=SCHEMA_FORMAT).status_code == 400


def test_json_object_needs_the_word_json_in_the_prompt(client):
    assert error_of(chat(client, response_format={"type": "json_object"})) == (400, invalid(
        "Prompt must contain the word 'json' in some form to use 'response_format' "
        "of type 'json_object'."))
    messages = [{"role": "system", "content": "Answer in JSON."}, *USER]
    response = chat(client, messages=messages, response_format={"type": "json_object"})
    assert response.status_code == 200
    assert json.loads(response.json()["choices"][0]["message"]["content"]) == {
        "reply": "Hello from deepseek-chat."}


def test_json_object_follows_a_schema_written_in_the_prompt(client):
    schema = {"type": "object", "required": ["city", "population"], "additionalProperties": False,
              "properties": {"city": {"type": "string"}, "population": {"type": "integer"}}}
    messages = [{"role": "system", "content": "Reply in JSON matching this schema: "
                                              + json.dumps(schema, separators=(",", ":"))}, *USER]
    content = chat(client, messages=messages, response_format={"type": "json_object"}).json()[
        "choices"][0]["message"]["content"]
    assert json.loads(content) == {"city": "city", "population": 1}
    jsonschema.validate(json.loads(content), schema)
    client.post("/_emulator/config", json={"follow_schema": False}).raise_for_status()
    ignored = chat(client, messages=messages, response_format={"type": "json_object"}).json()
    assert json.loads(ignored["choices"][0]["message"]["content"]) == {
        "reply": "Hello from deepseek-chat."}


# ------------------------------------------------------------ max_tokens
@pytest.mark.parametrize("model,limit", [("deepseek-chat", 8192), ("deepseek-reasoner", 65536)])
def test_max_tokens_outside_the_models_range_is_400(client, model, limit):
    assert chat(client, model, max_tokens=limit).status_code == 200
    for value in (limit + 1, 0):
        assert error_of(chat(client, model, max_tokens=value)) == (400, invalid(
            f"Invalid max_tokens value, the valid range of max_tokens is [1, {limit}]"))
    assert chat(client, model, max_tokens="many").status_code == 422


# ---------------------------------------------------------- keep-alive
def test_busy_keepalive_stream_sends_comments_then_the_answer(client):
    client.post("/_emulator/fault", json={"mode": "busy_keepalive", "seconds": 1.0,
                                          "interval": 0.3}).raise_for_status()
    started = time.monotonic()
    with client.stream("POST", "/chat/completions",
                       json={"model": "deepseek-chat", "messages": USER, "stream": True}) as r:
        headers_after = time.monotonic() - started
        assert r.status_code == 200
        lines = [line for line in r.iter_lines() if line]
    comments = [line for line in lines if line == ": keep-alive"]
    assert headers_after < 0.5 and len(comments) == 4         # at 0, .3, .6 and .9 s
    assert lines[:4] == comments and lines[-1] == "data: [DONE]"
    assert time.monotonic() - started >= 0.9


def test_busy_keepalive_nonstream_sends_blank_lines_then_the_json(client):
    client.post("/_emulator/fault", json={"mode": "busy_keepalive", "seconds": 0.5,
                                          "interval": 0.2}).raise_for_status()
    response = chat(client)
    assert response.status_code == 200 and response.text.startswith("\n\n\n{")   # 0, .2, .4 s
    assert response.json()["choices"][0]["finish_reason"] == "stop"


def test_busy_keepalive_for_ever_until_the_client_goes(client):
    client.post("/_emulator/fault", json={"mode": "busy_keepalive", "seconds": 0,
                                          "interval": 0.1}).raise_for_status()
    started, received = time.monotonic(), b""
    with client.stream("POST", "/chat/completions",
                       json={"model": "deepseek-chat", "messages": USER}) as r:
        assert r.status_code == 200
        for part in r.iter_raw():
            received += part
            if time.monotonic() - started > 1.0:
                break
    assert received and set(received) == {ord("\n")}             # nothing but blank lines


# --------------------------------------------------------------- tools, n
def test_tool_calls_follow_the_tools_schema(client):
    body = chat(client, tools=[TOOL]).json()
    choice = body["choices"][0]
    call = choice["message"]["tool_calls"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] == ""
    assert call["type"] == "function" and call["function"]["name"] == "lookup"
    jsonschema.validate(json.loads(call["function"]["arguments"]), TOOL["function"]["parameters"])
    followup = [*USER, {"role": "assistant", "content": "", "tool_calls": [call]},
                {"role": "tool", "tool_call_id": call["id"], "content": "42"}]
    after = chat(client, messages=followup, tools=[TOOL]).json()["choices"][0]
    assert after["finish_reason"] == "stop" and after["message"]["content"].startswith("Hello")


def test_openai_sdk_reads_streamed_tool_calls_and_n_choices(server):
    sdk = openai.OpenAI(base_url=server.url, api_key=KEY, max_retries=0)
    stream = sdk.chat.completions.create(model="deepseek-chat", messages=USER, tools=[TOOL],
                                         stream=True)
    calls = [tc for chunk in stream if chunk.choices for tc in chunk.choices[0].delta.tool_calls or []]
    assert [c.function.name for c in calls] == ["lookup"]
    assert json.loads(calls[0].function.arguments) == {"query": "query", "limit": 0}
    with pytest.raises(openai.BadRequestError) as refused:     # DeepSeek serves n = 1 only
        sdk.chat.completions.create(model="deepseek-chat", messages=USER, n=3)
    assert refused.value.body["message"] == "Invalid n value (currently only n = 1 is supported)"
    httpx.post(f"{server.url}/_emulator/config", json={"max_n": 3}).raise_for_status()
    many = sdk.chat.completions.create(model="deepseek-chat", messages=USER, n=3)
    assert [c.index for c in many.choices] == [0, 1, 2]


def test_logprobs_one_entry_per_token_with_top_alternatives(client):
    choice = chat(client, logprobs=True, top_logprobs=2).json()["choices"][0]
    entries = choice["logprobs"]["content"]
    assert [e["token"] for e in entries] == ["Hello", " from", " deepseek-chat."] + [" word"] * 8
    assert entries[0]["top_logprobs"] == [
        {"token": "Hello", "logprob": 0.0, "bytes": list(b"Hello")},
        {"token": "Hello1", "logprob": -1.0, "bytes": list(b"Hello1")}]
    assert chat(client).json()["choices"][0]["logprobs"] is None


# ------------------------------------------------- Anthropic-format endpoint
def messages(client, stream=False, **body):
    body = {"max_tokens": 100, "messages": USER, "model": "deepseek-chat", **body}
    return client.post("/anthropic/v1/messages", json={**body, "stream": stream},
                       headers={"x-api-key": KEY, "Authorization": ""})


def test_anthropic_messages_answer_in_anthropics_format(client):
    body = messages(client, model="deepseek-reasoner", system="Be brief.").json()
    assert (body["type"], body["role"], body["stop_reason"]) == ("message", "assistant", "end_turn")
    assert [b["type"] for b in body["content"]] == ["thinking", "text"]
    assert body["content"][0]["thinking"] == "Let me think step by step."
    assert body["content"][1]["text"] == "Hello from deepseek-reasoner." + " word" * 8
    assert body["usage"] == {"input_tokens": 8 + 7, "output_tokens": 6 + 11}
    assert messages(client, max_tokens=2).json()["stop_reason"] == "max_tokens"


def test_anthropic_messages_map_unsupported_names_to_deepseek_chat(client):
    assert messages(client, model="claude-sonnet-4-5").json()["model"] == "deepseek-chat"
    assert messages(client, model="gpt-4o").json()["model"] == "deepseek-chat"  # DeepSeek's docs: mapped, not refused
    unauthorised = client.post("/anthropic/v1/messages", headers={"x-api-key": "sk-wrong",
                                                                  "Authorization": ""},
                               json={"model": "deepseek-chat", "max_tokens": 5, "messages": USER})
    assert unauthorised.status_code == 401
    assert unauthorised.json()["error"]["type"] == "authentication_error"
    assert messages(client, max_tokens=None).status_code == 400


def test_anthropic_messages_tool_use_and_stream_events(client):
    tool = {"name": "lookup", "input_schema": TOOL["function"]["parameters"]}
    body = messages(client, tools=[tool]).json()
    assert body["stop_reason"] == "tool_use" and body["content"][0]["type"] == "tool_use"
    jsonschema.validate(body["content"][0]["input"], tool["input_schema"])
    with client.stream("POST", "/anthropic/v1/messages", headers={"x-api-key": KEY},
                       json={"model": "deepseek-chat", "max_tokens": 50, "messages": USER,
                             "stream": True}) as response:
        events = [line[7:] for line in response.iter_lines() if line.startswith("event: ")]
        assert response.headers["content-type"].startswith("text/event-stream")
    assert events[:2] == ["message_start", "content_block_start"]
    assert events.count("content_block_delta") == 11
    assert events[-3:] == ["content_block_stop", "message_delta", "message_stop"]


def test_cli_flags_set_the_switches():
    proc = subprocess.Popen([sys.executable, "-m", "emulators.deepseek", "--port", "0",
                             "--json-schema-status", "422", "--ignore-schema", "--max-n", "2",
                             "--reply-tokens", "103"],
                            cwd=Path(__file__).resolve().parents[2], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("ready http://127.0.0.1:")
        config = httpx.get(line.split()[1] + "/_emulator/config", timeout=5).json()["config"]
        assert config == {"json_schema_status": 422, "follow_schema": False, "max_n": 2, "reply_tokens": 103}
        body = {"model": "deepseek-chat", "messages": [{"role": "user", "content": "hi"}]}
        reply = httpx.post(line.split()[1] + "/chat/completions", json=body, timeout=5).json()
        assert reply["usage"]["completion_tokens"] == 103
    finally:
        proc.terminate()
        proc.wait(10)
