"""The Ollama emulator behaves like the real server (issue 11 points 4-9, issue 12 queue).

Driven over real HTTP: httpx, and raw sockets where "no bytes sent" or "the
client closed its connection" must be exact.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import jsonschema
import pytest

from emulators import count_prompt_tokens, serve_in_thread
from emulators import ollama

ROOT = Path(__file__).resolve().parents[2]
USER = [{"role": "user", "content": "Say hello."}]
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "required": ["city", "unit"],
    "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]},
                   "days": {"type": "integer", "minimum": 1, "maximum": 7}}}}}


@pytest.fixture(scope="module")
def server():
    running = serve_in_thread(ollama.create_app())
    yield running
    running.stop()


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=10) as c:
        c.post("/_emulator/reset").raise_for_status()
        yield c
        c.post("/_emulator/reset").raise_for_status()


def configure(client, **settings):
    response = client.post("/_emulator/config", json=settings)
    assert response.status_code == 200, response.text
    return response.json()["config"]


def stats(client):
    return client.get("/_emulator/stats").json()


def chat(client, model="qwen2.5:7b", messages=USER, **extra):
    return client.post("/api/chat", json={"model": model, "messages": messages,
                                          "stream": False, **extra})


def raw_chat(server, stream=False, model="qwen2.5:7b") -> socket.socket:
    """Send a chat request on a raw socket and return it unread."""
    body = json.dumps({"model": model, "messages": USER, "stream": stream}).encode()
    sock = socket.create_connection((server.host, server.port))
    sock.sendall(b"POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(body) + body)
    return sock


def wait_for(predicate, timeout=3.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def received_nothing(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        sock.recv(1)
    except socket.timeout:
        return True
    return False


# ------------------------------------------------------------ slots/queue
def test_requests_beyond_the_slots_wait_with_no_bytes_sent(client, server):
    configure(client, num_parallel=1, tokens_per_second=10)      # 11 tokens: ~1.1 s each
    first, second = raw_chat(server), raw_chat(server)
    assert wait_for(lambda: stats(client)["queued"] == 1)
    assert stats(client)["running"] == 1
    assert received_nothing(second, 0.4)                          # not even the headers
    for sock in (first, second):
        sock.settimeout(5)
        assert sock.recv(12) == b"HTTP/1.1 200"
        sock.close()
    assert stats(client)["max_running"] == 1


def test_raising_num_parallel_starts_queued_requests_at_once(client, server):
    configure(client, num_parallel=1, tokens_per_second=2)       # 5.5 s per answer
    held = [raw_chat(server), raw_chat(server)]
    assert wait_for(lambda: stats(client)["queued"] == 1)
    configure(client, num_parallel=2)
    assert stats(client)["queued"] == 0 and stats(client)["running"] == 2
    for sock in held:
        sock.close()


def test_a_full_queue_answers_503_server_busy(client, server):
    configure(client, num_parallel=1, max_queue=1, tokens_per_second=10)
    held = [raw_chat(server), raw_chat(server)]
    assert wait_for(lambda: stats(client)["queued"] == 1)
    busy = chat(client)
    assert busy.status_code == 503
    assert busy.json() == {"error": "server busy, please try again.  maximum pending requests exceeded"}
    for sock in held:
        sock.close()


def test_closing_a_queued_request_leaves_the_queue_and_counts_as_cancelled(client, server):
    configure(client, num_parallel=1, tokens_per_second=5)
    running, queued = raw_chat(server), raw_chat(server)
    assert wait_for(lambda: stats(client)["queued"] == 1)
    queued.close()
    assert wait_for(lambda: stats(client)["queued"] == 0, timeout=1.0)
    assert stats(client)["cancelled"] == 1 and stats(client)["running"] == 1
    running.close()


@pytest.mark.parametrize("stream", [True, False])
def test_closing_a_running_request_frees_its_slot_within_a_second(client, server, stream):
    configure(client, num_parallel=1, tokens_per_second=2)       # 11 tokens: 5.5 s
    sock = raw_chat(server, stream=stream)
    assert wait_for(lambda: stats(client)["running"] == 1)
    if stream:
        sock.settimeout(5)
        assert sock.recv(12) == b"HTTP/1.1 200"                   # first token arrived
    time.sleep(0.2)
    sock.close()
    closed = time.monotonic()
    assert wait_for(lambda: stats(client)["running"] == 0, timeout=1.0)
    assert time.monotonic() - closed < 1.0
    assert stats(client)["cancelled"] == 1
    configure(client, tokens_per_second=0)
    assert chat(client).status_code == 200                        # the slot is usable again


def test_a_hung_request_holds_its_slot_until_the_client_goes(client, server):
    configure(client, num_parallel=1)
    client.post("/_emulator/fault", json={"mode": "hang", "count": 1}).raise_for_status()
    sock = raw_chat(server)
    assert wait_for(lambda: stats(client)["running"] == 1)
    sock.close()
    assert wait_for(lambda: stats(client)["running"] == 0, timeout=1.0)
    assert stats(client)["cancelled"] == 1


# ------------------------------------------------------------------ speed
def test_token_rate_paces_the_stream_and_sets_eval_duration(client):
    configure(client, tokens_per_second=20, prompt_tokens_per_second=100, reply_tokens=20)
    started = time.monotonic()
    with client.stream("POST", "/api/chat", json={"model": "qwen2.5:7b", "messages": USER}) as r:
        lines = [json.loads(line) for line in r.iter_lines() if line]
    elapsed = time.monotonic() - started
    final = lines[-1]
    assert final["eval_count"] == 20 and len(lines) == 21
    assert final["eval_duration"] == 1_000_000_000                # 20 tokens at 20/s
    assert final["prompt_eval_duration"] == count_prompt_tokens(USER) * 10_000_000
    assert elapsed >= 0.9                                         # 19 gaps of 50 ms + prompt


def test_load_seconds_delay_only_a_cold_model(client):
    configure(client, load_seconds=0.5)
    started = time.monotonic()
    cold = chat(client).json()
    cold_elapsed, started = time.monotonic() - started, time.monotonic()
    warm = chat(client).json()
    assert cold["load_duration"] == 500_000_000 and cold_elapsed >= 0.45
    assert warm["load_duration"] == 1_000_000 and time.monotonic() - started < 0.45


def test_another_num_ctx_reloads_the_model(client):
    """sched.go needsReload: a request whose num_ctx differs from the loaded runner's reloads
    the model, so a client varying num_ctx pays the load time again each time it changes."""
    configure(client, load_seconds=0.3)
    assert chat(client, options={"num_ctx": 8192}).json()["load_duration"] == 300_000_000
    assert chat(client, options={"num_ctx": 8192}).json()["load_duration"] == 1_000_000
    assert client.get("/api/ps").json()["models"][0]["context_length"] == 8192
    assert chat(client).json()["load_duration"] == 300_000_000      # the default 4096 again
    assert client.get("/api/ps").json()["models"][0]["context_length"] == 4096
    assert stats(client)["reloads"] == 1


def test_reply_tokens_sets_the_answer_length(client):
    configure(client, reply_tokens=150)
    body = chat(client).json()
    assert body["eval_count"] == 150 and len(body["message"]["content"].split()) == 150


# ---------------------------------------------------------------- context
def test_a_prompt_over_num_ctx_is_truncated_silently(client):
    long = [{"role": "user", "content": "x" * 40_000}]            # 10004 tokens
    body = chat(client, messages=long).json()                     # default num_ctx 4096
    assert body["done_reason"] == "stop"
    assert body["prompt_eval_count"] == 4096 - (4096 - 5) // 2    # llama_server.go trim
    bigger = chat(client, messages=long, options={"num_ctx": 16384}).json()
    assert bigger["prompt_eval_count"] == count_prompt_tokens(long) == 10004
    assert stats(client)["last_options"]["qwen2.5:7b"] == {"num_ctx": 16384}


def test_truncate_false_refuses_a_prompt_over_num_ctx_instead_of_cutting_it(client):
    long = [{"role": "user", "content": "x" * 20_000}]              # 5,004 tokens
    for stream in (False, True):
        refused = client.post("/api/chat", json={"model": "qwen2.5:7b", "messages": long,
                                                 "truncate": False, "stream": stream})
        assert (refused.status_code, refused.json()) == (400, {"error": "the input length exceeds the context length"})
    fits = chat(client, messages=long, truncate=False, options={"num_ctx": 8192}).json()
    assert fits["prompt_eval_count"] == 5004


def test_an_invalid_format_is_a_500_before_the_first_byte(client):
    response = client.post("/api/chat", json={"model": "qwen2.5:7b", "messages": USER, "format": "xml"})
    assert response.status_code == 500 and response.headers["content-type"] == "application/json"
    assert response.json() == {"error": 'invalid format: "\\"xml\\""; expected "json" or a valid JSON Schema object'}


def test_truncation_drops_the_oldest_messages_but_keeps_system(client):
    system = {"role": "system", "content": "s" * 400}             # 104 tokens
    old = [{"role": "user", "content": "o" * 4000}] * 3           # 1004 tokens each
    last = {"role": "user", "content": "l" * 400}                 # 104 tokens
    messages = [system, *old, last]
    body = chat(client, messages=messages, options={"num_ctx": 1300}).json()
    assert body["prompt_eval_count"] == 104 + 1004 + 104          # two old ones dropped
    configure(client, context_length=8192)
    assert chat(client, messages=messages).json()["prompt_eval_count"] == \
        count_prompt_tokens(messages)


# ----------------------------------------------------------- capabilities
@pytest.mark.parametrize("model,capabilities,key,ctx", [
    ("qwen2.5:3b", ["completion", "tools"], "qwen2.context_length", 32768),
    ("llava:7b", ["completion", "vision"], "llama.context_length", 32768),
    ("nomic-embed-text", ["embedding"], "nomic-bert.context_length", 2048),
])
def test_show_reports_capabilities_and_context_length(client, model, capabilities, key, ctx):
    client.post("/_emulator/models", json={"models": [model]}).raise_for_status()
    body = client.post("/api/show", json={"model": model}).json()
    assert body["capabilities"] == capabilities and body["model_info"][key] == ctx


@pytest.mark.parametrize("model,extra,message", [
    ("deepseek-r1:7b", {"tools": [TOOL]},
     "registry.ollama.ai/library/deepseek-r1:7b does not support tools"),
    ("qwen2.5:7b", {"think": True}, '"qwen2.5:7b" does not support thinking'),
    ("nomic-embed-text", {}, '"nomic-embed-text" does not support chat'),
])
def test_a_missing_capability_is_ollamas_400(client, model, extra, message):
    client.post("/_emulator/models", json={"models": [model]}).raise_for_status()
    response = client.post("/api/chat", json={"model": model, "messages": USER, **extra})
    assert response.status_code == 400 and response.json() == {"error": message}


def test_images_go_to_llava_and_a_text_model_drops_them_without_a_word(client):
    """ChatHandler checks no vision capability (v0.12.6 and later): a text runner ignores the
    images and answers 200, so only `images_ignored` shows that they were lost."""
    client.post("/_emulator/models", json={"models": ["llava:7b", "mistral:7b"]}).raise_for_status()
    images = [{"role": "user", "content": "what is this?", "images": ["aGk="]}]
    assert chat(client, "llava:7b", messages=images).status_code == 200
    assert stats(client)["images_ignored"] == 0
    blind = chat(client, "mistral:7b", messages=images)
    assert blind.status_code == 200 and blind.json()["message"]["content"].startswith("Hello from mistral:7b.")
    assert stats(client)["images_ignored"] == 1


# ----------------------------------------------------------------- thinking
def test_thinking_streams_in_its_own_field_by_default(client):
    with client.stream("POST", "/api/chat", json={"model": "deepseek-r1:7b",
                                                 "messages": USER}) as response:
        lines = [json.loads(line) for line in response.iter_lines() if line]
    thinking = "".join(line["message"].get("thinking", "") for line in lines)
    content = "".join(line["message"]["content"] for line in lines)
    assert thinking == "Let me think step by step." and "<think>" not in content
    assert stats(client)["last_request_by_model"]["deepseek-r1:7b"].get("think") is None


# -------------------------------------------------------------------- errors
@pytest.mark.parametrize("stream", [True, False])
def test_error_status_before_first_token_is_a_real_status(client, stream):
    client.post("/_emulator/fault", json={"mode": "error_status_before_first_token",
                                          "status": 503}).raise_for_status()
    response = client.post("/api/chat", json={"model": "qwen2.5:7b", "messages": USER,
                                              "stream": stream})
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"error": "llama runner process has terminated: exit status 2"}
    assert stats(client)["running"] == 0


def test_error_before_first_token_keeps_the_line_form(client):
    client.post("/_emulator/fault", json={"mode": "error_before_first_token"}).raise_for_status()
    with client.stream("POST", "/api/chat", json={"model": "qwen2.5:7b", "messages": USER}) as r:
        assert r.status_code == 200
        assert [json.loads(line) for line in r.iter_lines() if line] == [
            {"error": "llama runner process has terminated: exit status 2"}]


# ------------------------------------------------------------- format/tools
def test_format_json_returns_a_json_object(client):
    content = chat(client, format="json").json()["message"]["content"]
    assert json.loads(content) == {"reply": "Hello from qwen2.5:7b."}


def test_format_schema_returns_valid_content(client):
    schema = {"type": "object", "required": ["name", "tags", "score", "kind", "owner"],
              "properties": {
                  "name": {"type": "string", "minLength": 8}, "score": {"type": "number",
                                                                     "minimum": 2.5},
                  "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
                  "kind": {"enum": ["a", "b"]}, "ok": {"type": "boolean"},
                  "owner": {"$ref": "#/$defs/person"},
                  "maybe": {"anyOf": [{"type": "null"}, {"type": "integer"}]}},
              "$defs": {"person": {"type": "object", "required": ["id"],
                                   "properties": {"id": {"type": "integer", "minimum": 3}}}},
              "additionalProperties": False}
    streamed = ""
    with client.stream("POST", "/api/chat", json={"model": "qwen2.5:7b", "messages": USER,
                                                 "format": schema}) as response:
        for line in response.iter_lines():
            streamed += json.loads(line)["message"]["content"] if line else ""
    value = json.loads(streamed)
    jsonschema.validate(value, schema)
    assert value["owner"] == {"id": 3} and len(value["tags"]) == 2
    assert stats(client)["last_request_by_model"]["qwen2.5:7b"]["format"] == schema


def test_tools_answer_with_tool_calls_then_text_after_the_result(client):
    body = chat(client, tools=[TOOL]).json()
    call = body["message"]["tool_calls"][0]["function"]
    assert body["message"]["content"] == "" and call["name"] == "get_weather"
    jsonschema.validate(call["arguments"], TOOL["function"]["parameters"])
    followup = [*USER, {"role": "assistant", "content": "", "tool_calls": [{"function": call}]},
                {"role": "tool", "content": "sunny"}]
    answer = chat(client, messages=followup, tools=[TOOL]).json()["message"]
    assert "tool_calls" not in answer and answer["content"].startswith("Hello from")


def test_num_predict_caps_a_json_answer_with_done_reason_length(client):
    body = chat(client, format="json", options={"num_predict": 1}).json()
    assert body["done_reason"] == "length" and body["message"]["content"] == '{"reply":'


# -------------------------------------------------------------------- embed
def test_embed_returns_deterministic_unit_vectors(client):
    client.post("/_emulator/models", json={"models": ["nomic-embed-text"]}).raise_for_status()
    one = client.post("/api/embed", json={"model": "nomic-embed-text", "input": "hello"}).json()
    two = client.post("/api/embed", json={"model": "nomic-embed-text",
                                          "input": ["hello", "world"]}).json()
    assert set(one) == {"model", "embeddings", "total_duration", "load_duration",
                        "prompt_eval_count"}
    assert len(one["embeddings"]) == 1 and len(one["embeddings"][0]) == 768
    assert two["embeddings"][0] == one["embeddings"][0] != two["embeddings"][1]
    assert abs(sum(v * v for v in one["embeddings"][0]) - 1) < 1e-3
    assert two["prompt_eval_count"] == 4
    bad = client.post("/api/embed", json={"model": "nomic-embed-text", "input": [1]})
    assert bad.status_code == 400 and bad.json() == {"error": "invalid input type"}


def test_embed_on_a_chat_model_is_the_runners_500(client):
    response = client.post("/api/embed", json={"model": "qwen2.5:7b", "input": "hi"})
    assert response.status_code == 500
    assert response.json() == {"error": "this model does not support embeddings"}


# ------------------------------------------------------------------ control
def test_config_rejects_bad_settings_and_reset_restores_defaults(client):
    for bad in ({"num_parallel": 0}, {"nope": 1}, {"think_format": "tags"},
                {"tokens_per_second": "fast"}):
        response = client.post("/_emulator/config", json=bad)
        assert response.status_code == 400 and "error" in response.json()
    configure(client, num_parallel=2, context_length=8192)
    client.post("/_emulator/reset").raise_for_status()
    assert client.get("/_emulator/config").json()["config"] == {
        "num_parallel": 4, "max_queue": 512, "tokens_per_second": 0.0,
        "prompt_tokens_per_second": 0.0, "load_seconds": 0.0, "reply_tokens": None,
        "context_length": 4096, "think_format": "field"}


def test_cli_flags_set_the_switches():
    proc = subprocess.Popen(
        [sys.executable, "-m", "emulators.ollama", "--port", "0", "--num-parallel", "2",
         "--context-length", "8192", "--tokens-per-second", "15", "--think-format", "inline"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("ready http://127.0.0.1:")
        config = httpx.get(line.split()[1] + "/_emulator/config", timeout=5).json()["config"]
        assert (config["num_parallel"], config["context_length"], config["tokens_per_second"],
                config["think_format"]) == (2, 8192, 15.0, "inline")
    finally:
        proc.terminate()
        proc.wait(10)
