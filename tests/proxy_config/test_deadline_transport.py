"""proxy_config.deadline_transport against the pinned LiteLLM, through LiteLLM's own HTTP handler
(AsyncHTTPHandler, the client base_llm_http_handler uses for Ollama and DeepSeek) and real emulators
on loopback: the patched transport enforces the deadlines, LiteLLM maps a missed deadline to its
Timeout, a non-streaming request comes back assembled, and other requests pass untouched. The
transport's original method is restored after every test.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from types import SimpleNamespace

import httpx
import pytest

from emulators import deepseek as deepseek_emulator
from emulators import ollama as ollama_emulator
from emulators._common import serve_in_thread
from proxy_config import deadline_transport
from proxy_config.settings import RoutingSettings

pytestmark = pytest.mark.filterwarnings("ignore:Items? .* using the `ReadOnly` qualifier:UserWarning")  # pydantic on LiteLLM's types

DEADLINE = 1.0
ROOMY = 20.0  # for tests not about timing: the emulated Ollama may still hold a runner for the last hung request
KEY = "sk-test-deadlines"
CHAT = {"messages": [{"role": "user", "content": "Say hello."}]}


@pytest.fixture(scope="module")
def backends():
    ollama, deepseek = serve_in_thread(ollama_emulator.create_app()), serve_in_thread(deepseek_emulator.create_app(api_key=KEY))
    yield SimpleNamespace(ollama=ollama.url, deepseek=deepseek.url)
    ollama.stop()
    deepseek.stop()


@pytest.fixture
def transport_restored():
    from litellm.llms.custom_httpx.aiohttp_transport import LiteLLMAiohttpTransport

    original = LiteLLMAiohttpTransport.__dict__["handle_async_request"]
    yield LiteLLMAiohttpTransport
    LiteLLMAiohttpTransport.handle_async_request = original


def _install(backends, ollama_url=None, deadline=DEADLINE) -> bool:
    routing = RoutingSettings(local_first_token_seconds=deadline, local_stall_seconds=deadline,
                              cloud_first_token_seconds=deadline, cloud_stall_seconds=deadline)
    return deadline_transport.install(SimpleNamespace(ollama_url=ollama_url or backends.ollama,
                                                      deepseek_url=backends.deepseek, routing=routing))


def _run(url: str, body: dict, stream: bool = False) -> httpx.Response:
    """POST through LiteLLM's AsyncHTTPHandler in a fresh event loop; a non-stream body is read."""
    from litellm.llms.custom_httpx.http_handler import AsyncHTTPHandler

    async def post():
        handler = AsyncHTTPHandler(timeout=60)
        try:
            return await handler.post(url, data=json.dumps(body), headers={"Authorization": f"Bearer {KEY}"}, stream=stream)
        finally:
            await handler.close()

    return asyncio.run(post())


def _fault(url: str, mode: str, **spec) -> None:
    httpx.post(f"{url}/_emulator/reset").raise_for_status()
    if mode != "none":
        httpx.post(f"{url}/_emulator/fault", json={"mode": mode, **spec}).raise_for_status()


def _last_sent(url: str) -> dict:
    return httpx.get(f"{url}/_emulator/stats").json()["last_chat_request"]


def test_install_patches_litellms_aiohttp_transport_once(backends, transport_restored, caplog):
    with caplog.at_level(logging.INFO, logger="gateway.tuning"):
        assert _install(backends) is True
    patched = transport_restored.__dict__["handle_async_request"]
    assert getattr(patched, "_gateway_tuned", False)
    assert _install(backends) is True and transport_restored.__dict__["handle_async_request"] is patched
    assert "progress deadlines local first token 1 s / stall 1 s, cloud first token 1 s / stall 1 s" in caplog.text


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("provider", ["ollama_chat", "deepseek"])
def test_a_missed_first_token_deadline_is_litellms_timeout_with_the_deadlines_message(backends, transport_restored,
                                                                                      provider, stream):
    import litellm

    _fault(backends.ollama, "none")
    asyncio.run(litellm.acompletion(model="ollama_chat/qwen2.5:7b", api_base=backends.ollama, max_retries=0,
                                    **CHAT))  # warm, before the deadlines: LiteLLM's first call sets a lot up
    assert _install(backends)
    if provider == "deepseek":
        model, base, key, backend, setting = "deepseek/deepseek-chat", backends.deepseek, KEY, "DeepSeek", "cloud"
        _fault(base, "busy_keepalive", seconds=0, interval=0.25)  # busy: 200 at once, then only `: keep-alive` comments
    else:
        model, base, key, backend, setting = "ollama_chat/qwen2.5:7b", backends.ollama, None, "Ollama", "local"
        _fault(base, "hang")

    async def call():
        response = await litellm.acompletion(model=model, api_base=base, api_key=key, stream=stream, timeout=60,
                                             max_retries=0, **CHAT)
        if stream:
            async for _ in response:
                pass

    start = time.monotonic()
    with pytest.raises(litellm.Timeout) as caught:
        asyncio.run(call())
    assert DEADLINE * 0.9 <= time.monotonic() - start < DEADLINE + 5
    assert f"{backend} sent no token within 1 s of the request (first-token deadline, " \
           f"gateway_settings.{setting}_first_token_seconds)" in str(caught.value)
    _fault(base, "none")


def test_a_non_streaming_request_is_streamed_and_assembled(backends, transport_restored):
    assert _install(backends, deadline=ROOMY)
    _fault(backends.ollama, "none")
    response = _run(f"{backends.ollama}/api/chat", {"model": "qwen2.5:7b", **CHAT, "stream": False})
    assert _last_sent(backends.ollama)["stream"] is True
    body = response.json()
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    assert body["done"] is True and body["message"] == {"role": "assistant", "content": "Hello from qwen2.5:7b." + " word" * 8}
    assert (body["prompt_eval_count"], body["eval_count"]) == (7, 11)


def test_an_error_after_the_start_of_a_non_streaming_request_is_an_error_status(backends, transport_restored):
    from litellm.llms.custom_httpx.http_handler import MaskedHTTPStatusError

    assert _install(backends, deadline=ROOMY)
    _fault(backends.deepseek, "error_mid_stream", after_tokens=2)
    with pytest.raises(MaskedHTTPStatusError) as caught:  # what base_llm_http_handler maps by its status
        _run(f"{backends.deepseek}/chat/completions", {"model": "deepseek-chat", **CHAT})
    assert caught.value.response.status_code == 500 and "Internal Server Error" in caught.value.response.text
    _fault(backends.deepseek, "none")


def test_requests_to_other_urls_pass_untouched(backends, transport_restored):
    assert _install(backends, ollama_url="http://127.0.0.1:9")  # this Ollama is not the configured one
    _fault(backends.ollama, "none")
    response = _run(f"{backends.ollama}/api/chat", {"model": "qwen2.5:7b", **CHAT, "stream": False})
    assert response.status_code == 200 and _last_sent(backends.ollama)["stream"] is False


def test_install_is_skipped_when_litellm_uses_the_httpx_transport(backends, transport_restored, monkeypatch):
    import litellm

    monkeypatch.setattr(litellm, "disable_aiohttp_transport", True)
    assert _install(backends) is False
    assert not getattr(transport_restored.__dict__["handle_async_request"], "_gateway_tuned", False)


class _Trickle(httpx.AsyncByteStream):
    """A body sent piece by piece, `pause` seconds apart."""

    def __init__(self, pieces: list[bytes], pause: float) -> None:
        self.pieces, self.pause = pieces, pause

    async def __aiter__(self):
        for piece in self.pieces:
            await asyncio.sleep(self.pause)
            yield piece


def _one_piece_backend(pieces: list[bytes], pause: float):
    """A backend that ignores `stream: true` and answers JSON in one piece, after blank lines."""
    sent = []

    async def send(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return httpx.Response(200, headers={"content-type": "application/json"}, stream=_Trickle(pieces, pause),
                              request=request)

    return send, sent


def test_blank_lines_before_a_one_piece_answer_are_not_progress():
    from proxy_config.deadlines import DeadlineMissed, TierDeadlines, send_with_deadlines

    tiers = (TierDeadlines("cloud", "DeepSeek", "http://deepseek.test", first_token=DEADLINE, stall=DEADLINE),)
    request = httpx.Request("POST", "http://deepseek.test/chat/completions", json={"model": "deepseek-chat", **CHAT})
    send, sent = _one_piece_backend([b"\n"] * 20, pause=0.1)  # 2 s of blank lines, then nothing
    start = time.monotonic()
    with pytest.raises(DeadlineMissed, match="DeepSeek sent no token within 1 s of the request"):
        asyncio.run(send_with_deadlines(send, request, tiers))
    assert DEADLINE * 0.9 <= time.monotonic() - start < DEADLINE + 1
    assert sent[0]["stream"] is True and sent[0]["stream_options"] == {"include_usage": True}

    answer = {"id": "c1", "object": "chat.completion", "choices": []}
    send, _ = _one_piece_backend([b"\n", b"\n", json.dumps(answer).encode()], pause=0.1)
    response = asyncio.run(send_with_deadlines(send, request, tiers))
    assert response.status_code == 200 and json.loads(response.content) == answer  # within the deadline: as it came
