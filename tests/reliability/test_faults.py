"""Issue 6: fault injection against the real gateway, streaming and non-streaming.

Every fault mode of the emulators is injected into one tier while the other is healthy, and the
specified outcome is asserted (the table in docs/reliability.md):
- served by the other tier, with the route headers saying so;
- or, for a stream that had already sent tokens, a final OpenAI-shaped error event and no
  `data: [DONE]` (never a silent truncation);
- or a clear OpenAI-shaped error with the right status when no tier can serve.
No request may outlast the configured timeout by more than a margin, and no error body may carry
a stack trace. The gateway runs with 3 s backend timeouts so the hang cases stay fast.

Cases that need other infrastructure (Redis down, the ledger's disk unwritable) belong in their
own module next to this one, reusing `tests.reliability.helpers` and the `Result` helpers below.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import httpx
import openai
import pytest

from emulators import ollama as ollama_emulator
from emulators._common import serve_in_thread
from tests.harness import DEEPSEEK_KEY, Emulator, Gateway
from tests.reliability.helpers import (SHORT, assert_clean_text, assert_openai_error, auth, short_timeout_config,
                                       sse_events, stream_text, wait_healthy)

TIMEOUT = 3.0          # every backend's timeout and stream_timeout in this module's gateway
MARGIN = 5.0           # generous: the machine is shared; a hang would take the emulator's forever
HEALTH_INTERVAL = 2.0  # Ollama poll; long enough that a refused connection is seen by a request first


class LocalOllama(Emulator):
    """An Ollama emulator of this module's own, so it can be stopped and restarted on its port."""

    def __init__(self) -> None:
        super().__init__(serve_in_thread(ollama_emulator.create_app()))
        self.port = self.server.port

    def start(self) -> None:
        self.server = serve_in_thread(ollama_emulator.create_app(), port=self.port)

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture(scope="module")
def local():
    emulator = LocalOllama()
    yield emulator
    emulator.stop()


@pytest.fixture(scope="module")
def fault_gw(local, deepseek, tmp_path_factory):
    config = short_timeout_config(tmp_path_factory.mktemp("faults"), TIMEOUT, health_interval_seconds=HEALTH_INTERVAL)
    gw = Gateway("faults", {"OLLAMA_URL": local.url, "DEEPSEEK_URL": deepseek.url, "DEEPSEEK_API_KEY": DEEPSEEK_KEY}, config=config)
    yield gw.wait_ready()
    gw.stop()


@pytest.fixture(autouse=True)
def healthy(local, fault_gw, deepseek):
    local.reset()
    wait_healthy(fault_gw.url)


@dataclass
class Result:
    status: int
    route: tuple[str, str]
    body: dict | None
    events: list[str]
    elapsed: float
    text: str = ""


def call(gw: Gateway, model: str, stream: bool, messages=SHORT) -> Result:
    start = time.monotonic()
    with httpx.stream("POST", f"{gw.url}/v1/chat/completions", headers=auth(), timeout=4 * TIMEOUT + MARGIN,
                      json={"model": model, "messages": messages, "stream": stream}) as response:
        is_sse = response.headers.get("content-type", "").startswith("text/event-stream")
        lines = list(response.iter_lines()) if is_sse else []
        raw = b"" if is_sse else response.read()
    route = (response.headers.get("x-gateway-route"), response.headers.get("x-gateway-reason"))
    body = json.loads(raw) if raw else None
    result = Result(response.status_code, route, body, sse_events(lines), time.monotonic() - start)
    assert_clean_text(raw.decode(errors="replace") + "\n".join(lines))
    if result.status == 200:
        result.text = stream_text(result.events) if stream else body["choices"][0]["message"]["content"]
    return result


def served(result: Result, route: tuple[str, str], model: str, stream: bool) -> None:
    assert (result.status, result.route) == (200, route), result
    assert result.text.startswith(f"Hello from {model}."), result.text
    if stream:
        assert result.events[-1] == "[DONE]"
    else:
        assert result.body["model"] == model


def stream_failed_after_tokens(result: Result, model: str) -> None:
    """Tokens, then one error event; never [DONE], never a finish_reason."""
    assert result.status == 200 and result.events, result
    assert "[DONE]" not in result.events and '"finish_reason": "stop"' not in "".join(result.events)
    *chunks, last = result.events
    error = json.loads(last)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["code"]) == ("server_error", "stream_interrupted"), error
    assert "incomplete" in error["message"]
    text = stream_text(chunks)  # the tokens that got through before the cut (a cut may swallow the last few)
    assert text and f"Hello from {model}. word word".startswith(text), text


CLOUD_FALLBACK = ("cloud", "local-error-fallback")
LOCAL_FALLBACK = ("local", "cloud-error-fallback")


# ------------------------------------------------------------------ Ollama faults (local tier)
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("mode", ["http_500", "http_503", "http_404", "error_before_first_token"])
def test_ollama_http_errors_are_served_by_the_cloud(fault_gw, local, deepseek, mode, stream):
    local.fault(mode)
    served(call(fault_gw, "auto", stream), CLOUD_FALLBACK, "deepseek-chat", stream)
    assert deepseek.chats("deepseek-chat") == 1


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("mode,spec", [("hang", {}), ("slow", {"delay": 3 * TIMEOUT})], ids=["hang", "first-token-after-timeout"])
def test_ollama_hang_or_slow_first_token_falls_back_within_the_timeout(fault_gw, local, deepseek, mode, spec, stream):
    local.fault(mode, **spec)
    result = call(fault_gw, "auto", stream)
    served(result, CLOUD_FALLBACK, "deepseek-chat", stream)
    assert TIMEOUT * 0.8 <= result.elapsed < TIMEOUT + MARGIN, result.elapsed


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_ollama_slow_first_token_within_the_timeout_is_served_locally(fault_gw, local, stream):
    local.fault("slow", delay=TIMEOUT / 3)
    served(call(fault_gw, "auto", stream), ("local", "simple"), "qwen2.5:7b", stream)


@pytest.mark.parametrize("mode", ["cut", "error_mid_stream", "malformed"])
def test_ollama_broken_reply_without_streaming_is_served_by_the_cloud(fault_gw, local, deepseek, mode):
    local.fault(mode, after_tokens=3)
    served(call(fault_gw, "auto", False), CLOUD_FALLBACK, "deepseek-chat", False)


@pytest.mark.parametrize("mode", ["cut", "error_mid_stream"])
def test_ollama_stream_cut_after_tokens_ends_with_an_error_event(fault_gw, local, deepseek, mode):
    local.fault(mode, after_tokens=3)
    stream_failed_after_tokens(call(fault_gw, "auto", True), "qwen2.5:7b")
    assert deepseek.chats() == 0  # tokens were sent: no silent switch to another model mid-answer


def test_ollama_malformed_ndjson_stream_gets_502_not_an_empty_success(fault_gw, local):
    """LiteLLM skips unparseable NDJSON lines and would end the stream with finish_reason "stop";
    the stream guard (hooks.streams) turns that into a 502."""
    local.fault("malformed")
    result = call(fault_gw, "auto", True)
    assert result.status == 502 and result.body is not None, result
    assert "ended its stream without finishing it" in result.body["error"]["message"]


def test_openai_sdk_raises_on_a_cut_stream(fault_gw, local):
    local.fault("cut", after_tokens=3)
    stream = fault_gw.client().chat.completions.create(model="auto", messages=SHORT, stream=True)
    text = ""
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            text += (chunk.choices[0].delta.content or "") if chunk.choices else ""
    assert text.startswith("Hello from qwen2.5:7b.")
    assert "incomplete" in caught.value.message


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_ollama_refusing_connections_falls_back_then_routes_around_it(fault_gw, local, deepseek, stream):
    polls = local.stats()["requests"].get("/api/tags", 0)
    deadline = time.monotonic() + 2 * HEALTH_INTERVAL + MARGIN
    while local.stats()["requests"].get("/api/tags", 0) == polls and time.monotonic() < deadline:
        time.sleep(0.05)  # stop right after a poll, so the request (not the poll) meets the refusal
    local.stop()
    try:
        first, second = call(fault_gw, "auto", stream), call(fault_gw, "auto", stream)
        served(first, CLOUD_FALLBACK, "deepseek-chat", stream)
        served(second, ("cloud", "local-unavailable"), "deepseek-chat", stream)  # marked down: no retry
        assert first.elapsed < MARGIN and second.elapsed < MARGIN
        assert httpx.get(f"{fault_gw.url}/health").json()["ollama"] == "unreachable"
    finally:
        local.start()
    wait_healthy(fault_gw.url)
    served(call(fault_gw, "auto", stream), ("local", "simple"), "qwen2.5:7b", stream)


# ---------------------------------------------------------------- DeepSeek faults (cloud tier)
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("mode", ["http_401", "http_402", "http_429", "http_500", "http_503", "error_before_first_token"])
def test_deepseek_errors_are_served_locally(fault_gw, local, deepseek, mode, stream):
    deepseek.fault(mode)
    served(call(fault_gw, "deepseek-chat", stream), LOCAL_FALLBACK, "qwen2.5:7b", stream)
    assert deepseek.chats("deepseek-chat") == 1


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_deepseek_timeout_is_served_locally_within_the_timeout(fault_gw, deepseek, stream):
    deepseek.fault("hang")
    result = call(fault_gw, "deepseek-chat", stream)
    served(result, LOCAL_FALLBACK, "qwen2.5:7b", stream)
    assert TIMEOUT * 0.8 <= result.elapsed < TIMEOUT + MARGIN, result.elapsed


@pytest.mark.parametrize("mode", ["cut", "error_mid_stream"])
def test_deepseek_broken_reply_without_streaming_is_served_locally(fault_gw, deepseek, mode):
    deepseek.fault(mode)
    served(call(fault_gw, "deepseek-chat", False), LOCAL_FALLBACK, "qwen2.5:7b", False)


@pytest.mark.parametrize("mode", ["cut", "error_mid_stream"])
def test_deepseek_stream_cut_after_tokens_ends_with_an_error_event(fault_gw, local, deepseek, mode):
    deepseek.fault(mode, after_tokens=3)
    stream_failed_after_tokens(call(fault_gw, "deepseek-chat", True), "deepseek-chat")
    assert local.stats()["chat_by_model"] == {}


# ------------------------------------------------------------ both tiers failing: a clear 503
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("model,local_fault,cloud_fault", [
    ("auto", "http_500", "http_500"),
    ("auto", "http_503", "http_429"),
    ("auto", "error_before_first_token", "http_500"),  # streaming: LiteLLM calls Ollama's error line a 400
    ("deepseek-chat", "http_500", "http_401"),
    ("deepseek-chat", "http_404", "http_402"),
    ("deepseek-chat", "http_503", "http_503"),
])
def test_both_tiers_failing_gets_503_naming_both(fault_gw, local, deepseek, model, local_fault, cloud_fault, stream):
    local.fault(local_fault)
    deepseek.fault(cloud_fault)
    result = call(fault_gw, model, stream)
    error = assert_openai_error(httpx.Response(result.status, json=result.body), 503)
    assert "Both tiers failed" in error["message"]
    assert "local tier" in error["message"] and "cloud tier" in error["message"]
    assert result.elapsed < MARGIN


def test_both_tiers_hanging_gets_503_within_both_timeouts(fault_gw, local, deepseek):
    local.fault("hang")
    deepseek.fault("hang")
    result = call(fault_gw, "auto", False)
    error = assert_openai_error(httpx.Response(result.status, json=result.body), 503)
    assert "timeout" in error["message"]
    assert result.elapsed < 2 * TIMEOUT + MARGIN
