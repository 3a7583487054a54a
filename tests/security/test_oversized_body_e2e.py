"""Issue 13: a body far over MAX_BODY_BYTES (4 MB by default) still gets its 413. The gateway reads and drops
the rest of the body (up to RequestLimits.drain_bytes, for at most LINGER_SECONDS, as nginx's lingering close)
before it answers, so the client reads the status instead of a connection reset."""

from __future__ import annotations

import httpx
import pytest

from tests.harness import MASTER_KEY

FORTY_MB = 40 * 1024 * 1024
CHAT = {"model": "auto", "messages": [{"role": "user", "content": ""}]}


def big_body() -> bytes:
    return b'{"model": "auto", "max_tokens": 10, "messages": [{"role": "user", "content": "' + b"x" * FORTY_MB + b'"}]}'


def chunks(body: bytes, size: int = 1024 * 1024):
    for start in range(0, len(body), size):
        yield body[start:start + size]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_40_mb_body_gets_a_413_json_the_client_can_read(gateway, ollama, chunked):
    body = big_body()
    content = chunks(body) if chunked else body
    response = httpx.post(f"{gateway.url}/v1/chat/completions", content=content, timeout=60,
                          headers={"Authorization": f"Bearer {MASTER_KEY}", "Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert "MAX_BODY_BYTES" in response.json()["error"]["message"]
    assert ollama.chats() == 0


def test_a_40_mb_messages_body_gets_anthropics_413(gateway):
    response = httpx.post(f"{gateway.url}/v1/messages", content=big_body(), timeout=60,
                          headers={"x-api-key": MASTER_KEY, "Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json()["type"] == "error"
    assert response.json()["error"]["type"] == "request_too_large"
