"""Shared assertions and fixtures' building blocks for the reliability suites."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import yaml

from gateway.errors import ANTHROPIC_TYPES, error_type, is_messages
from tests.harness import DEEPSEEK_KEY, MASTER_KEY, REPO

ERROR_KEYS = {"message", "type", "param", "code"}
SECRETS = (MASTER_KEY, DEEPSEEK_KEY)
SHORT = [{"role": "user", "content": "Say hello."}]
LONG = [{"role": "user", "content": "Explain this log: " + "x" * 600}]


def assert_clean_text(text: str) -> None:
    """No stack trace, no source path, no secret."""
    assert "Traceback" not in text and 'File "/' not in text and "site-packages" not in text, text
    for secret in SECRETS:
        assert secret not in text


def assert_openai_error(response: httpx.Response, status: int) -> dict:
    """`response` is exactly `{"error": {"message","type","param","code"}}` with `type` matching `status`."""
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == ERROR_KEYS, error
    assert error["type"] == error_type(status), error
    assert isinstance(error["message"], str) and error["message"].strip(), error
    assert_clean_text(response.text)
    return error


def assert_anthropic_error(response: httpx.Response, status: int) -> dict:
    """`response` is Anthropic's `{"type": "error", "error": {"type", "message", ...}}` (on /v1/messages),
    with `type` matching `status` and the gateway's `param` and `code` inside."""
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"type", "error"} and body["type"] == "error", body
    error = body["error"]
    assert set(error) == ERROR_KEYS, error
    assert error["type"] == ANTHROPIC_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error"), error
    assert isinstance(error["message"], str) and error["message"].strip(), error
    assert_clean_text(response.text)
    return error


def assert_error(response: httpx.Response, status: int) -> dict:
    """The error shape of the route: Anthropic's on its Messages routes, OpenAI's everywhere else."""
    check = assert_anthropic_error if is_messages(response.request.url.path) else assert_openai_error
    return check(response, status)


def sse_events(lines) -> list[str]:
    """The `data:` payloads of an SSE stream, in order."""
    return [line[len("data: "):] for line in lines if line.startswith("data: ")]


def stream_text(events: list[str]) -> str:
    text = ""
    for event in events:
        if event != "[DONE]":
            for choice in json.loads(event).get("choices", []):
                text += (choice.get("delta") or {}).get("content") or ""
    return text


def auth(key: str = MASTER_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def short_timeout_config(directory: Path, seconds: float, **gateway_settings: object) -> Path:
    """The shipped config with every backend's timeout and stream_timeout set to `seconds`."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    for entry in config["model_list"]:
        entry["litellm_params"].update(timeout=seconds, stream_timeout=seconds)
    config["gateway_settings"] = {**config.get("gateway_settings", {}), **gateway_settings}
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def wait_healthy(url: str, model: str = "qwen2.5:7b", timeout: float = 15.0) -> None:
    """Until the gateway's cached backend state says Ollama is up with `model` installed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = httpx.get(f"{url}/health", timeout=5).json()
        if body["ollama"] == "connected" and model in body["models"]:
            return
        time.sleep(0.1)
    raise AssertionError(f"gateway at {url} never saw Ollama healthy: {body}")
