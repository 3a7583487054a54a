"""Tests for the Ollama emulator: wire format, determinism, faults, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from emulators import count_prompt_tokens, serve_in_thread
from emulators import ollama

ROOT = Path(__file__).resolve().parents[2]
MESSAGES = [{"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Say hello please"}]}]


@pytest.fixture(scope="module")
def server():
    running = serve_in_thread(ollama.create_app())
    yield running
    running.stop()


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=5) as c:
        c.post("/_emulator/reset").raise_for_status()
        yield c


def set_fault(client, **spec):
    response = client.post("/_emulator/fault", json=spec)
    assert response.status_code == 200, response.text
    return response.json()["fault"]


def chat(client, model="qwen2.5:7b", **extra):
    return client.post("/api/chat", json={"model": model, "messages": MESSAGES, **extra})


def stream_lines(client, model="qwen2.5:7b", **extra):
    with client.stream("POST", "/api/chat",
                       json={"model": model, "messages": MESSAGES, **extra}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/x-ndjson"
        return [line for line in response.iter_lines() if line]


def test_count_prompt_tokens():
    # ceil(9/4)+4 + ceil(16/4)+4
    assert count_prompt_tokens(MESSAGES) == 7 + 8
    assert count_prompt_tokens([{"role": "assistant", "content": None}]) == 4


def test_simple_endpoints(client):
    assert client.get("/").text == "Ollama is running"
    assert client.head("/").status_code == 200
    assert client.get("/api/version").json() == {"version": ollama.VERSION}
    models = client.get("/api/tags").json()["models"]
    assert [m["name"] for m in models] == list(ollama.DEFAULT_MODELS)
    entry = models[0]
    assert set(entry) >= {"name", "model", "modified_at", "size", "digest", "details"}
    assert set(entry["details"]) >= {"format", "family", "families", "parameter_size",
                                     "quantization_level"}
    openai_ids = [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert openai_ids == list(ollama.DEFAULT_MODELS)


@pytest.mark.parametrize("model,key,ctx,capabilities", [
    ("qwen2.5:7b", "qwen2.context_length", 32768, ["completion", "tools"]),
    ("llama3.2:3b", "llama.context_length", 131072, ["completion", "tools"]),
    ("mistral:7b", "llama.context_length", 32768, ["completion", "tools"]),
    ("deepseek-r1:7b", "qwen2.context_length", 131072, ["completion", "thinking"]),
])
def test_show(client, model, key, ctx, capabilities):
    body = client.post("/api/show", json={"model": model}).json()
    assert body["model_info"][key] == ctx
    assert {"modelfile", "parameters", "template", "details"} <= set(body)
    assert body["capabilities"] == capabilities


def test_show_unknown_model(client):
    response = client.post("/api/show", json={"model": "nope:1b"})
    assert response.status_code == 404
    assert response.json() == {"error": "model 'nope:1b' not found"}


def test_chat_stream_exact(client):
    lines = [json.loads(line) for line in stream_lines(client)]
    words = [line["message"]["content"] for line in lines[:-1]]
    assert words == ["Hello", " from", " qwen2.5:7b."] + [" word"] * 8
    assert all(line["done"] is False for line in lines[:-1])
    final = lines[-1]
    assert final["done"] is True and final["done_reason"] == "stop"
    assert final["eval_count"] == 11
    assert final["prompt_eval_count"] == count_prompt_tokens(MESSAGES)
    assert final["total_duration"] == (final["load_duration"] + final["prompt_eval_duration"]
                                       + final["eval_duration"])


def test_chat_nonstream_num_predict(client):
    body = chat(client, stream=False, options={"num_predict": 2}).json()
    assert body["message"] == {"role": "assistant", "content": "Hello from qwen2.5:7b. word word"}
    assert body["done_reason"] == "length" and body["eval_count"] == 5
    assert body["done"] is True and body["prompt_eval_count"] == 15


def test_deepseek_r1_thinking(client):
    lines = [json.loads(line) for line in stream_lines(client, "deepseek-r1:7b", think=True)]
    thinking = "".join(line["message"].get("thinking", "") for line in lines)
    content = "".join(line["message"]["content"] for line in lines)
    assert thinking == "Let me think step by step."
    assert content == "Hello from deepseek-r1:7b." + " word" * 8
    assert lines[-1]["eval_count"] == 6 + 11
    body = chat(client, "deepseek-r1:7b", stream=False).json()     # think defaults to true
    assert body["message"]["thinking"] == "Let me think step by step."
    assert body["message"]["content"] == "Hello from deepseek-r1:7b." + " word" * 8
    off = chat(client, "deepseek-r1:7b", stream=False, think=False).json()
    assert "thinking" not in off["message"] and off["eval_count"] == 11
    client.post("/_emulator/config", json={"think_format": "inline"}).raise_for_status()
    body = chat(client, "deepseek-r1:7b", stream=False).json()
    assert body["message"]["content"].startswith(
        "<think>\nLet me think step by step.\n</think>\n\nHello from deepseek-r1:7b.")
    assert "thinking" not in body["message"] and body["eval_count"] == 8 + 11


def test_chat_errors(client):
    assert client.post("/api/chat", content=b"{bad").status_code == 400
    assert client.post("/api/chat", content=b"").json() == {"error": "missing request body"}
    missing = client.post("/api/chat", json={"messages": []})
    assert missing.status_code == 400 and missing.json() == {"error": "model is required"}
    unknown = chat(client, "nope:1b")
    assert unknown.status_code == 404 and unknown.json() == {"error": "model 'nope:1b' not found"}
    assert chat(client, think=True).status_code == 400


def test_models_control_and_ps(client):
    chat(client, stream=False)
    assert [m["name"] for m in client.get("/api/ps").json()["models"]] == ["qwen2.5:7b"]
    assert set(client.get("/api/ps").json()["models"][0]) >= {"expires_at", "size_vram",
                                                              "context_length"}
    client.post("/_emulator/models", json={"models": ["llama3.2:3b"]}).raise_for_status()
    assert chat(client).status_code == 404
    assert chat(client, "llama3.2:3b", stream=False).status_code == 200
    client.post("/_emulator/reset")
    assert chat(client, stream=False).status_code == 200


def test_pull(client):
    with client.stream("POST", "/api/pull", json={"model": "phi3:mini"}) as response:
        lines = [json.loads(line) for line in response.iter_lines() if line]
    statuses = [line["status"] for line in lines]
    assert statuses[0] == "pulling manifest"
    assert statuses[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    progress = [line for line in lines if "digest" in line]
    assert len(progress) >= 3 and progress[-1]["completed"] == progress[-1]["total"]
    assert "phi3:mini" in [m["name"] for m in client.get("/api/tags").json()["models"]]
    with client.stream("POST", "/api/pull", json={"model": "doesnotexist:1b"}) as response:
        lines = [json.loads(line) for line in response.iter_lines() if line]
    assert lines[-1] == {"error": "pull model manifest: file does not exist"}
    assert client.post("/api/pull", json={"model": "x-doesnotexist:1", "stream": False}
                       ).status_code == 500


@pytest.mark.parametrize("mode,status,message", [
    ("http_500", 500, "llama runner process has terminated: exit status 2"),
    ("http_503", 503, "server busy, please try again.  maximum pending requests exceeded"),
    ("http_404", 404, "model 'qwen2.5:7b' not found"),
])
def test_http_faults(client, mode, status, message):
    set_fault(client, mode=mode)
    response = chat(client)
    assert response.status_code == status and response.json() == {"error": message}


def test_fault_models_and_count(client):
    set_fault(client, mode="http_503", models=["llama3.2:3b"], count=2)
    assert chat(client, stream=False).status_code == 200
    assert chat(client, "llama3.2:3b").status_code == 503
    assert chat(client, "llama3.2:3b").status_code == 503
    assert chat(client, "llama3.2:3b", stream=False).status_code == 200
    assert client.get("/_emulator/fault").json()["fault"]["mode"] == "none"
    assert client.post("/_emulator/fault", json={"mode": "bogus"}).status_code == 400


def test_hang(client):
    set_fault(client, mode="hang")
    with pytest.raises(httpx.ReadTimeout):
        client.post("/api/chat", json={"model": "qwen2.5:7b"}, timeout=0.5)
    assert client.get("/api/version").status_code == 200   # others still served


def test_slow_and_chunk_delay(client):
    set_fault(client, mode="slow", delay=0.3)
    start = time.monotonic()
    assert chat(client, stream=False).status_code == 200
    assert time.monotonic() - start >= 0.3
    with serve_in_thread(ollama.create_app(chunk_delay=0.02)) as slow:
        with httpx.Client(base_url=slow.url, timeout=5) as slow_client:
            start = time.monotonic()
            assert len(stream_lines(slow_client)) == 12
            assert time.monotonic() - start >= 10 * 0.02


def test_cut(client):
    set_fault(client, mode="cut", after_tokens=2)
    seen = []
    with pytest.raises(httpx.RemoteProtocolError):
        with client.stream("POST", "/api/chat", json={"model": "qwen2.5:7b"}) as response:
            for line in response.iter_lines():
                seen.append(json.loads(line))
    assert [line["message"]["content"] for line in seen] == ["Hello", " from"]
    with pytest.raises(httpx.RemoteProtocolError):
        chat(client, stream=False)


def test_error_faults(client):
    set_fault(client, mode="error_before_first_token")
    lines = stream_lines(client)
    assert [json.loads(line) for line in lines] == [{"error": ollama.RUNNER_ERROR}]
    assert chat(client, stream=False).status_code == 500
    set_fault(client, mode="error_mid_stream", after_tokens=3)
    lines = [json.loads(line) for line in stream_lines(client)]
    assert len(lines) == 4 and lines[-1] == {"error": ollama.RUNNER_ERROR}


def test_malformed(client):
    set_fault(client, mode="malformed")
    for line in stream_lines(client):
        with pytest.raises(ValueError):
            json.loads(line)
    response = chat(client, stream=False)
    assert response.status_code == 200
    with pytest.raises(ValueError):
        response.json()


def test_stats(client):
    chat(client, stream=False)
    chat(client, "llama3.2:3b", stream=False, options={"num_predict": 1})
    client.get("/api/tags")
    stats = client.get("/_emulator/stats").json()
    assert stats["requests"] == {"/api/chat": 2, "/api/tags": 1}
    assert stats["chat_by_model"] == {"qwen2.5:7b": 1, "llama3.2:3b": 1}
    assert stats["last_chat_request"]["options"] == {"num_predict": 1}


def test_cli_port_zero_prints_ready_line():
    with subprocess.Popen([sys.executable, "-m", "emulators.ollama", "--port", "0",
                           "--models", "qwen2.5:7b"],
                          cwd=ROOT, stdout=subprocess.PIPE, text=True) as proc:
        watchdog = threading.Timer(15, proc.kill)     # never block on readline
        watchdog.start()
        try:
            line = proc.stdout.readline().strip()
            assert line.startswith("ready http://127.0.0.1:") and not line.endswith(":0")
            url = line.split()[1]
            models = httpx.get(f"{url}/api/tags").json()["models"]
            assert [m["name"] for m in models] == ["qwen2.5:7b"]
        finally:
            watchdog.cancel()
            proc.terminate()
            proc.wait(timeout=10)
