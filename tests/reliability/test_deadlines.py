"""Issue 11, point 5: progress deadlines instead of idle timeouts, end to end.

A real `gateway serve` with 3 s first-token and stall deadlines on both tiers and 60 s idle
timeouts (`timeout`/`stream_timeout`), so only the deadlines can explain a fast fallback. The
clients are the openai SDK and, where the raw SSE events matter, httpx. Faults:
- DeepSeek busy: 200 headers at once, then `: keep-alive` comments or blank lines (the emulator's
  `busy_keepalive` fault; DeepSeek API docs, "Rate Limit");
- Ollama hung: accepts the request and sends nothing (emulator `hang`);
- a stall between tokens / slow but steady tokens: the emulators' delay between chunks.
"""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

from emulators import deepseek as deepseek_emulator
from emulators import ollama as ollama_emulator
from emulators._common import REASONING_TEXT, serve_in_thread
from tests.harness import DEEPSEEK_KEY, REPO, Emulator, Gateway
from tests.reliability.helpers import LONG, SHORT, assert_clean_text, auth, sse_events, stream_text, wait_healthy

DEADLINE = 3.0      # every first-token and stall deadline of this module's gateway
IDLE = 60.0         # LiteLLM's idle timeouts: far beyond every bound asserted here
MARGIN = 5.0        # generous: the machine is shared
REPLY = " word" * 8  # the emulators' answer after "Hello from MODEL."


class AppEmulator(Emulator):
    """An emulator whose app this module holds, to change its delay between chunks."""

    def __init__(self, app) -> None:
        self.app = app
        super().__init__(serve_in_thread(app))

    def chunk_delay(self, seconds: float) -> None:
        self.app.state.emulator.chunk_delay = seconds

    def reset(self) -> None:
        super().reset()
        self.chunk_delay(0.0)


@pytest.fixture(scope="module")
def local():
    emulator = AppEmulator(ollama_emulator.create_app())
    yield emulator
    emulator.server.stop()


@pytest.fixture(scope="module")
def cloud():
    emulator = AppEmulator(deepseek_emulator.create_app(api_key=DEEPSEEK_KEY))
    yield emulator
    emulator.server.stop()


@pytest.fixture(scope="module")
def deadline_gw(local, cloud, tmp_path_factory):
    import yaml

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    for entry in config["model_list"]:
        entry["litellm_params"].update(timeout=IDLE, stream_timeout=IDLE)
    config["gateway_settings"].update(local_first_token_seconds=DEADLINE, local_stall_seconds=DEADLINE,
                                      cloud_first_token_seconds=DEADLINE, cloud_stall_seconds=DEADLINE)
    path = tmp_path_factory.mktemp("deadlines") / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    gw = Gateway("deadlines", {"OLLAMA_URL": local.url, "DEEPSEEK_URL": cloud.url, "DEEPSEEK_API_KEY": DEEPSEEK_KEY},
                 config=path)
    gw.wait_ready()
    wait_healthy(gw.url)
    for model in ("auto", "deepseek-chat"):  # warm both tiers: a cold first call costs seconds on a busy machine
        for stream in (False, True):
            ask(gw, model, stream)
    yield gw
    gw.stop()


@pytest.fixture(autouse=True)
def healthy(local, cloud, deadline_gw):
    local.reset()
    cloud.reset()
    wait_healthy(deadline_gw.url)


def busy(cloud: Emulator) -> None:
    """DeepSeek queues the request: 200 at once, then only `: keep-alive` comments (a stream) or blank
    lines, every half second, until the client goes (emulators.deepseek `busy_keepalive`)."""
    cloud.fault("busy_keepalive", seconds=0, interval=0.5)


def ask(gw: Gateway, model: str, stream: bool, messages=SHORT):
    """(route headers, text, completion or None, seconds) through the openai SDK."""
    client = gw.client(timeout=IDLE)
    start = time.monotonic()
    raw = client.chat.completions.with_raw_response.create(model=model, messages=messages, stream=stream)
    route = (raw.headers.get("x-gateway-route"), raw.headers.get("x-gateway-reason"))
    if not stream:
        completion = raw.parse()
        return route, completion.choices[0].message.content, completion, time.monotonic() - start
    text = "".join((chunk.choices[0].delta.content or "") for chunk in raw.parse() if chunk.choices)
    return route, text, None, time.monotonic() - start


# ------------------------------------------------------------------------ before the first token
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_busy_deepseek_sending_keepalives_is_served_locally_at_the_first_token_deadline(deadline_gw, local, cloud, stream):
    busy(cloud)
    route, text, completion, elapsed = ask(deadline_gw, "auto", stream, LONG)  # complex: the cloud first
    assert route == ("local", "cloud-error-fallback")
    assert text == "Hello from qwen2.5:7b." + REPLY
    assert DEADLINE * 0.9 <= elapsed < DEADLINE + MARGIN, elapsed
    assert cloud.chats("deepseek-chat") == 1 and local.chats("qwen2.5:7b") == 1
    if completion is not None:
        assert completion.model == "qwen2.5:7b" and completion.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_hung_ollama_is_served_by_the_cloud_at_the_first_token_deadline(deadline_gw, local, cloud, stream):
    local.fault("hang")
    route, text, completion, elapsed = ask(deadline_gw, "auto", stream)
    assert route == ("cloud", "local-error-fallback")
    assert text == "Hello from deepseek-chat." + REPLY
    assert DEADLINE * 0.9 <= elapsed < DEADLINE + MARGIN, elapsed
    assert local.chats("qwen2.5:7b") == 1 and cloud.chats("deepseek-chat") == 1


def test_both_tiers_past_their_first_token_deadlines_get_503_naming_both(deadline_gw, local, cloud):
    local.fault("hang")
    busy(cloud)
    start = time.monotonic()
    with pytest.raises(openai.APIStatusError) as caught:
        deadline_gw.client(timeout=IDLE).chat.completions.create(model="auto", messages=SHORT)
    assert caught.value.status_code == 503
    message = caught.value.body["message"] if isinstance(caught.value.body, dict) else str(caught.value)
    assert "Both tiers failed" in message, message
    assert "Ollama sent no token within 3 s of the request (first-token deadline" in message, message
    assert "DeepSeek sent no token within 3 s" in message, message
    assert time.monotonic() - start < 2 * DEADLINE + MARGIN


# ----------------------------------------------------------------------------- after the first token
def test_stream_stalling_after_tokens_ends_with_stream_interrupted_and_no_done(deadline_gw, local, cloud):
    local.chunk_delay(3 * DEADLINE)  # the first token at once, the next one far past the stall deadline
    start = time.monotonic()
    with httpx.stream("POST", f"{deadline_gw.url}/v1/chat/completions", headers=auth(), timeout=IDLE,
                      json={"model": "auto", "messages": SHORT, "stream": True}) as response:
        lines = list(response.iter_lines())
    elapsed = time.monotonic() - start
    assert response.status_code == 200 and response.headers["x-gateway-route"] == "local"
    events = sse_events(lines)
    assert_clean_text("\n".join(lines))
    assert "[DONE]" not in events and '"finish_reason": "stop"' not in "".join(events)
    *chunks, last = events
    assert stream_text(chunks) == "Hello"  # the first token got through, the stall cut the rest
    error = json.loads(last)["error"]
    assert (error["type"], error["code"]) == ("server_error", "stream_interrupted"), error
    assert "incomplete" in error["message"] and "stall deadline" in error["message"], error
    assert DEADLINE * 0.9 <= elapsed < DEADLINE + MARGIN, elapsed
    assert cloud.chats() == 0  # tokens were sent: no switch to another model mid-answer


def test_openai_sdk_raises_on_a_stalled_deepseek_stream(deadline_gw, local, cloud):
    cloud.chunk_delay(3 * DEADLINE)
    stream = deadline_gw.client(timeout=IDLE).chat.completions.create(model="deepseek-chat", messages=SHORT, stream=True)
    text = ""
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            text += (chunk.choices[0].delta.content or "") if chunk.choices else ""
    assert text == "Hello"
    assert "incomplete" in caught.value.message
    assert local.chats() == 0


@pytest.mark.parametrize("tier", ["local", "cloud"])
def test_non_streaming_request_stalling_after_tokens_is_served_by_the_other_tier(deadline_gw, local, cloud, tier):
    stalled, model, served, reason = ((local, "auto", "deepseek-chat", ("cloud", "local-error-fallback")) if tier == "local"
                                      else (cloud, "deepseek-chat", "qwen2.5:7b", ("local", "cloud-error-fallback")))
    stalled.chunk_delay(3 * DEADLINE)  # nothing reached the client yet: the other tier can still answer all of it
    route, text, completion, elapsed = ask(deadline_gw, model, False)
    assert route == reason
    assert text == f"Hello from {served}." + REPLY
    assert DEADLINE * 0.9 <= elapsed < DEADLINE + MARGIN, elapsed


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_slow_but_steady_tokens_past_the_first_token_deadline_are_not_cut(deadline_gw, local, cloud, stream):
    local.chunk_delay(DEADLINE / 3)  # 11 chunks: about 3.3 DEADLINEs in all, never a stall
    route, text, completion, elapsed = ask(deadline_gw, "auto", stream)
    assert route == ("local", "simple")
    assert text == "Hello from qwen2.5:7b." + REPLY
    assert elapsed > 2 * DEADLINE, elapsed
    assert cloud.chats() == 0


# ------------------------------------------------------------- a non-streaming request is assembled
def test_non_streaming_reply_is_assembled_from_a_stream_with_every_field(deadline_gw, local, cloud):
    completion = deadline_gw.client().chat.completions.create(model="deepseek-reasoner", messages=SHORT)
    sent = cloud.stats()["last_chat_request"]
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    message = completion.choices[0].message
    assert message.content == "Hello from deepseek-reasoner." + REPLY
    assert message.reasoning_content == REASONING_TEXT
    assert completion.choices[0].finish_reason == "stop"
    words = len(REASONING_TEXT.split()) + len(message.content.split())
    assert (completion.usage.completion_tokens, completion.usage.completion_tokens_details.reasoning_tokens) == (
        words, len(REASONING_TEXT.split()))

    completion = deadline_gw.client().chat.completions.create(model="qwen2.5:7b", messages=SHORT, max_tokens=3)
    assert local.stats()["last_chat_request"]["stream"] is True
    assert completion.choices[0].message.content == "Hello from qwen2.5:7b. word word word"
    assert completion.choices[0].finish_reason == "length"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (7, 6)  # the emulator's counts
