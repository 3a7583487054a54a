"""Tests for the DeepSeek emulator: wire format, auth, faults, openai SDK, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest

from emulators import count_prompt_tokens, serve_in_thread
from emulators import deepseek

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-test-emulator-1234"
MESSAGES = [{"role": "user", "content": "Say hello please"}]
PROMPT_TOKENS = count_prompt_tokens(MESSAGES)     # ceil(16/4) + 4 = 8


@pytest.fixture(scope="module")
def server():
    running = serve_in_thread(deepseek.create_app(api_key=KEY))
    yield running
    running.stop()


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=5,
                      headers={"Authorization": f"Bearer {KEY}"}) as c:
        c.post("/_emulator/reset").raise_for_status()
        yield c


def set_fault(client, **spec):
    response = client.post("/_emulator/fault", json=spec)
    assert response.status_code == 200, response.text


def chat(client, model="deepseek-chat", path="/chat/completions", **extra):
    return client.post(path, json={"model": model, "messages": MESSAGES, **extra})


def sse_events(client, model="deepseek-chat", **extra):
    """Raw SSE `data:`/comment lines of a streamed chat."""
    with client.stream("POST", "/chat/completions",
                       json={"model": model, "messages": MESSAGES, "stream": True,
                             **extra}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return [line for line in response.iter_lines() if line]


def chunks(lines):
    return [json.loads(line[6:]) for line in lines if line.startswith("data: {")]


def test_auth(client, server):
    assert httpx.get(f"{server.url}/models").status_code == 401
    bad = httpx.post(f"{server.url}/chat/completions", json={},
                     headers={"Authorization": "Bearer sk-wrong-abcd"})
    assert bad.status_code == 401
    assert bad.json()["error"]["message"] == \
        "Authentication Fails, Your api key: ****abcd is invalid"
    ids = [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert ids == ["deepseek-chat", "deepseek-reasoner"]


def test_nonstream_chat(client):
    body = chat(client, path="/v1/chat/completions").json()
    assert body["id"].startswith("chatcmpl-") and body["object"] == "chat.completion"
    assert body["model"] == "deepseek-chat" and body["system_fingerprint"]
    choice = body["choices"][0]
    assert choice["message"] == {"role": "assistant",
                                 "content": "Hello from deepseek-chat." + " word" * 8}
    assert choice["finish_reason"] == "stop"
    assert body["usage"] == {
        "prompt_tokens": PROMPT_TOKENS, "completion_tokens": 11,
        "total_tokens": PROMPT_TOKENS + 11, "prompt_tokens_details": {"cached_tokens": 0},
        "prompt_cache_hit_tokens": 0, "prompt_cache_miss_tokens": PROMPT_TOKENS,
        "completion_tokens_details": {"reasoning_tokens": 0}}


def test_reasoner_and_max_tokens(client):
    body = chat(client, "deepseek-reasoner", max_tokens=3).json()
    message = body["choices"][0]["message"]
    assert message["reasoning_content"] == "Let me think step by step."
    assert message["content"] == "Hello from deepseek-reasoner. word word word"
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 6 + 6
    assert body["usage"]["completion_tokens_details"] == {"reasoning_tokens": 6}
    assert chat(client, max_completion_tokens=1).json()["usage"]["completion_tokens"] == 4


def test_stream_with_usage(client):
    lines = sse_events(client, "deepseek-reasoner", stream_options={"include_usage": True})
    assert lines[-1] == "data: [DONE]"
    events = chunks(lines)
    assert all(e["object"] == "chat.completion.chunk" for e in events)
    deltas = [e["choices"][0]["delta"] for e in events if e["choices"]]
    assert deltas[0]["role"] == "assistant"
    reasoning = [d["reasoning_content"] for d in deltas if d.get("reasoning_content")]
    content = [d["content"] for d in deltas if d.get("content")]
    assert reasoning == ["Let", " me", " think", " step", " by", " step."]
    assert content == ["Hello", " from", " deepseek-reasoner."] + [" word"] * 8
    assert events[-2]["choices"][0]["finish_reason"] == "stop"
    assert events[-1]["choices"] == [] and events[-1]["usage"]["completion_tokens"] == 17
    plain = chunks(sse_events(client))
    assert all("usage" not in e for e in plain)
    assert plain[0]["choices"][0]["delta"] == {"role": "assistant", "content": "Hello"}


def test_request_errors(client):
    bad = client.post("/chat/completions", content=b"{nope")
    assert bad.status_code == 400 and bad.json()["error"]["param"] is None
    unknown = chat(client, "deepseek-nope")
    assert unknown.status_code == 400 and unknown.json()["error"]["message"] == "Model Not Exist"
    assert client.post("/chat/completions", json={"model": "deepseek-chat"}).status_code == 422
    assert chat(client, temperature=3).status_code == 422
    assert chat(client, max_tokens=0).status_code == 400


@pytest.mark.parametrize("mode,status,message", [
    ("http_401", 401, "Authentication Fails, Your api key: ****1234 is invalid"),
    ("http_402", 402, "Insufficient Balance"),
    ("http_429", 429, "Rate Limit Reached"),
    ("http_500", 500, "Internal Server Error"),
    ("http_503", 503, "Server overloaded, please try again later."),
])
def test_http_faults(client, mode, status, message):
    set_fault(client, mode=mode, count=1)
    response = chat(client)
    assert response.status_code == status
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert response.json()["error"]["message"] == message
    assert chat(client).status_code == 200        # count=1 reverted


def test_fault_restricted_to_models(client):
    set_fault(client, mode="http_402", models=["deepseek-reasoner"])
    assert chat(client).status_code == 200
    assert chat(client, "deepseek-reasoner").status_code == 402


def test_hang(client):
    set_fault(client, mode="hang")
    with pytest.raises(httpx.ReadTimeout):
        client.post("/chat/completions", timeout=0.5,
                    json={"model": "deepseek-chat", "messages": MESSAGES})
    assert client.get("/models").status_code == 200


def test_slow(client):
    set_fault(client, mode="slow", delay=0.3)
    start = time.monotonic()
    assert len(chunks(sse_events(client))) == 12
    assert time.monotonic() - start >= 0.3


def test_cut(client):
    set_fault(client, mode="cut")          # default after_tokens = 3
    seen = []
    with pytest.raises(httpx.RemoteProtocolError):
        with client.stream("POST", "/chat/completions",
                           json={"model": "deepseek-chat", "messages": MESSAGES,
                                 "stream": True}) as response:
            seen.extend(line for line in response.iter_lines() if line)
    assert len(seen) == 3 and "data: [DONE]" not in seen
    with pytest.raises(httpx.RemoteProtocolError):
        chat(client)


def test_error_faults(client):
    set_fault(client, mode="error_before_first_token")
    lines = sse_events(client)
    assert len(lines) == 1 and json.loads(lines[0][6:])["error"]["type"] == "server_error"
    assert chat(client).status_code == 500
    set_fault(client, mode="error_mid_stream", after_tokens=2)
    lines = sse_events(client)
    assert len(lines) == 3 and "error" in json.loads(lines[-1][6:])


def test_malformed(client):
    set_fault(client, mode="malformed")
    with pytest.raises(ValueError):
        chunks(sse_events(client))
    with pytest.raises(ValueError):
        chat(client).json()


def test_keepalive(client):
    set_fault(client, mode="keepalive", delay=0.6)
    lines = sse_events(client)
    comments = [line for line in lines if line == ": keep-alive"]
    assert len(comments) >= 2 and lines[:len(comments)] == comments
    assert lines[-1] == "data: [DONE]"
    response = chat(client)
    assert response.status_code == 200 and response.text.startswith("\n\n")
    assert response.json()["choices"][0]["finish_reason"] == "stop"


def test_stats(client):
    chat(client)
    chat(client, "deepseek-reasoner", path="/v1/chat/completions")
    stats = client.get("/_emulator/stats").json()
    assert stats["requests"] == {"/chat/completions": 1, "/v1/chat/completions": 1}
    assert stats["chat_by_model"] == {"deepseek-chat": 1, "deepseek-reasoner": 1}
    assert stats["last_chat_request"]["model"] == "deepseek-reasoner"


def test_openai_sdk(server):
    sdk = openai.OpenAI(base_url=server.url, api_key=KEY, max_retries=0)
    completion = sdk.chat.completions.create(model="deepseek-reasoner", messages=MESSAGES)
    assert completion.choices[0].message.content.startswith("Hello from deepseek-reasoner.")
    assert completion.choices[0].message.reasoning_content == "Let me think step by step."
    assert completion.usage.completion_tokens == 17
    stream = sdk.chat.completions.create(model="deepseek-reasoner", messages=MESSAGES,
                                         stream=True, stream_options={"include_usage": True})
    reasoning, content, usage = "", "", None
    for chunk in stream:
        usage = chunk.usage or usage
        if chunk.choices:
            reasoning += getattr(chunk.choices[0].delta, "reasoning_content", None) or ""
            content += chunk.choices[0].delta.content or ""
    assert reasoning == "Let me think step by step."
    assert content == "Hello from deepseek-reasoner." + " word" * 8
    assert usage.total_tokens == PROMPT_TOKENS + 17
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.url, api_key="bad", max_retries=0).models.list()


def test_cli_port_zero_prints_ready_line():
    with subprocess.Popen([sys.executable, "-m", "emulators.deepseek", "--port", "0",
                           "--api-key", KEY], cwd=ROOT, stdout=subprocess.PIPE, text=True) as proc:
        watchdog = threading.Timer(15, proc.kill)     # never block on readline
        watchdog.start()
        try:
            line = proc.stdout.readline().strip()
            assert line.startswith("ready http://127.0.0.1:") and not line.endswith(":0")
            url = line.split()[1]
            headers = {"Authorization": f"Bearer {KEY}"}
            assert httpx.get(f"{url}/models", headers=headers).status_code == 200
        finally:
            watchdog.cancel()
            proc.terminate()
            proc.wait(timeout=10)
