"""Issue 13: a stream that breaks mid-way ends with an error event whose message a person can act on, without
LiteLLM's or aiohttp's internals ("KeyError: 'message'", "TransferEncodingError"), on chat and on Messages."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.harness import MASTER_KEY

HI = [{"role": "user", "content": "Hi"}]
INTERNALS = ("KeyError", "TransferEncodingError", "litellm", "Exception -", "Traceback")


def last_error(gateway, path: str, body: dict) -> dict:
    with httpx.stream("POST", f"{gateway.url}{path}", json={**body, "stream": True}, timeout=30,
                      headers={"Authorization": f"Bearer {MASTER_KEY}"}) as response:
        events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert response.status_code == 200 and "[DONE]" not in events
    return json.loads(events[-1])["error"]


@pytest.mark.parametrize(("mode", "meaning"), [
    ("error_mid_stream", "llama runner process has terminated"),
    ("cut", "the backend closed the connection before its response was complete"),
])
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
def test_a_local_stream_broken_midway_ends_with_a_clean_error_event(gateway, ollama, mode, meaning, path):
    ollama.fault(mode)
    body = {"model": "auto", "messages": HI, **({"max_tokens": 50} if path == "/v1/messages" else {})}
    error = last_error(gateway, path, body)
    assert error["code"] == "stream_interrupted"
    assert error["message"].startswith("The stream failed after it had started, so the response is incomplete: ")
    assert meaning in error["message"] and error["message"].endswith(". Retry the request.")
    assert not [word for word in INTERNALS if word in error["message"]]
