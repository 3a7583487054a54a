"""Issue 6: a corpus of bad requests, each sent through the real gateway.

Every case must get a 4xx OpenAI-shaped error with the exact status (and, where the gateway's own
checks answer, the exact `param` and `code`), must never reach a backend, and must leave the gateway
healthy. The corpus covers invalid JSON, wrong types for every common field, missing fields,
unknown models, empty messages, invalid roles, bodies over the size limit (413, with and without
Content-Length), deep nesting, invalid UTF-8, out-of-range max_tokens and temperature, and bad keys.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import httpx
import pytest

from tests.harness import MASTER_KEY
from tests.reliability.helpers import SHORT, assert_openai_error, auth

ANY = object()
LIMIT = 4 * 1024 * 1024  # settings.max_body_bytes default; the session gateway does not change it
OK = {"model": "auto", "messages": SHORT}


@dataclass(frozen=True)
class Bad:
    id: str
    status: int
    body: object = None            # sent as JSON unless `raw` is set
    raw: bytes | None = None
    headers: dict = field(default_factory=lambda: auth())
    param: object = ANY
    code: object = ANY
    query: str = ""


def chat(**fields: object) -> dict:
    return {**OK, **fields}


def message(**fields: object) -> dict:
    return chat(messages=[{"role": "user", "content": "hi", **fields}])


def param(name: str, value: object, code: str = "invalid_value", where: str | None = None) -> Bad:
    return Bad(f"{name}={json.dumps(value)[:24]}", 400, chat(**{name: value}), param=where or name, code=code)


def nested(depth: int) -> bytes:
    return b'{"model": "auto", "messages": [{"role": "user", "content": "hi"}], "metadata": {"x": ' + b"[" * depth + b"]" * depth + b"}}"


def huge_chunks():
    yield b'{"model": "auto", "messages": [{"role": "user", "content": "'
    for _ in range(LIMIT // 65536 + 1):
        yield b"x" * 65536
    yield b'"}]}'


INVALID_JSON = [
    Bad("truncated-object", 400, raw=b'{"model": "auto", ', param=None, code="invalid_json"),
    Bad("trailing-comma", 400, raw=b'{"model": "auto", "messages": [],}', param=None, code="invalid_json"),
    Bad("single-quotes", 400, raw=b"{'model': 'auto'}", param=None, code="invalid_json"),
    Bad("bare-word", 400, raw=b"hello", param=None, code="invalid_json"),
    Bad("nan-literal", 400, raw=b'{"model": "auto", "messages": [], "temperature": NaN}', param=None, code="invalid_json"),
    Bad("two-objects", 400, raw=b"{} {}", param=None, code="invalid_json"),
    Bad("utf8-bom", 400, raw=b"\xef\xbb\xbf" + json.dumps(OK).encode(), param=None, code="invalid_json"),
    Bad("empty-body", 400, raw=b"", param=None, code="missing_body"),
    Bad("whitespace-body", 400, raw=b"  \n ", param=None, code="missing_body"),
    Bad("array-body", 400, raw=b"[]", param=None, code="invalid_type"),
    Bad("string-body", 400, raw=b'"hello"', param=None, code="invalid_type"),
    Bad("number-body", 400, raw=b"42", param=None, code="invalid_type"),
    Bad("null-body", 400, raw=b"null", param=None, code="invalid_type"),
    Bad("invalid-utf8", 400, raw=b'{"model": "auto", "messages": [{"role": "user", "content": "\xff\xfe"}]}', param=None, code="invalid_utf8"),
    Bad("truncated-utf8-sequence", 400, raw=b'{"model": "auto", "messages": [{"role": "user", "content": "caf\xc3"}]}', param=None, code="invalid_utf8"),
    Bad("nested-100-deep", 400, raw=nested(100), param=None, code="json_too_deep"),
    Bad("nested-100000-deep", 400, raw=nested(100_000), param=None, code="json_too_deep"),
]

MISSING_AND_MODEL = [
    Bad("empty-object", 400, {}, param="model", code="missing_required_parameter"),
    Bad("missing-messages", 400, {"model": "auto"}, param="messages", code="missing_required_parameter"),
    Bad("missing-model", 400, {"messages": SHORT}, param="model", code="missing_required_parameter"),
    Bad("model-null", 400, chat(model=None), param="model", code="missing_required_parameter"),
    Bad("messages-null", 400, chat(messages=None), param="messages", code="missing_required_parameter"),
    Bad("model-int", 400, chat(model=5), param="model", code="invalid_type"),
    Bad("model-list", 400, chat(model=["auto"]), param="model", code="invalid_type"),
    Bad("model-object", 400, chat(model={"name": "auto"}), param="model", code="invalid_type"),
    Bad("model-bool", 400, chat(model=True), param="model", code="invalid_type"),
    Bad("model-empty", 400, chat(model=""), param="model", code="invalid_type"),
    Bad("unknown-model", 404, chat(model="gpt-9"), param="model", code="model_not_found"),
    Bad("unknown-local-tag", 404, chat(model="qwen2.5:70b"), param="model", code="model_not_found"),
    Bad("provider-prefixed-model", 404, chat(model="deepseek/deepseek-chat"), param="model", code="model_not_found"),
]

MESSAGES = [
    Bad("messages-string", 400, chat(messages="hi"), param="messages", code="invalid_type"),
    Bad("messages-object", 400, chat(messages={"role": "user", "content": "hi"}), param="messages", code="invalid_type"),
    Bad("messages-number", 400, chat(messages=3), param="messages", code="invalid_type"),
    Bad("messages-empty", 400, chat(messages=[]), param="messages", code="invalid_value"),
    Bad("message-int", 400, chat(messages=[1]), param="messages[0]", code="invalid_type"),
    Bad("message-string", 400, chat(messages=["hi"]), param="messages[0]", code="invalid_type"),
    Bad("message-null", 400, chat(messages=[None]), param="messages[0]", code="invalid_type"),
    Bad("message-array", 400, chat(messages=[SHORT]), param="messages[0]", code="invalid_type"),
    Bad("role-unknown", 400, message(role="wizard"), param="messages[0].role", code="invalid_value"),
    Bad("role-missing", 400, chat(messages=[{"content": "hi"}]), param="messages[0].role", code="invalid_value"),
    Bad("role-int", 400, message(role=3), param="messages[0].role", code="invalid_value"),
    Bad("role-null", 400, message(role=None), param="messages[0].role", code="invalid_value"),
    Bad("role-uppercase", 400, message(role="USER"), param="messages[0].role", code="invalid_value"),
    Bad("second-role-invalid", 400, chat(messages=[*SHORT, {"role": "robot", "content": "x"}]), param="messages[1].role", code="invalid_value"),
    Bad("content-int", 400, message(content=5), param="messages[0].content", code="invalid_type"),
    Bad("content-object", 400, message(content={"text": "hi"}), param="messages[0].content", code="invalid_type"),
    Bad("content-bool", 400, message(content=True), param="messages[0].content", code="invalid_type"),
    Bad("content-missing", 400, chat(messages=[{"role": "user"}]), param="messages[0].content", code="missing_required_parameter"),
    Bad("content-part-string", 400, message(content=["hi"]), param="messages[0].content[0]", code="invalid_type"),
    Bad("content-part-untyped", 400, message(content=[{"text": "hi"}]), param="messages[0].content[0]", code="invalid_type"),
    Bad("name-int", 400, message(name=7), param="messages[0].name", code="invalid_type"),
    Bad("tool-calls-string", 400, chat(messages=[{"role": "assistant", "content": None, "tool_calls": "x"}]),
        param="messages[0].tool_calls", code="invalid_type"),
]

PARAMETERS = [
    param("temperature", 5), param("temperature", -1), param("temperature", 2.0001),
    param("temperature", "hot", "invalid_type"), param("temperature", True, "invalid_type"),
    param("max_tokens", -5), param("max_tokens", 0), param("max_tokens", 10**12), param("max_tokens", 100_000),
    param("max_tokens", "many", "invalid_type"), param("max_tokens", 1.5, "invalid_type"),
    param("max_completion_tokens", -1), param("max_completion_tokens", 10**9),
    param("top_p", 5), param("top_p", "x", "invalid_type"),
    param("n", 0), param("n", "x", "invalid_type"),
    param("stream", "yes", "invalid_type"), param("stream", 1, "invalid_type"),
    param("stop", 5, "invalid_type"), param("stop", [1, 2], "invalid_type"),
    param("tools", "x", "invalid_type"), param("tools", [1], "invalid_type", where="tools[0]"),
    param("tool_choice", 5, "invalid_type"),
    param("presence_penalty", 3), param("frequency_penalty", -3),
    param("seed", "x", "invalid_type"), param("user", 5, "invalid_type"),
    param("response_format", "json", "invalid_type"), param("response_format", {}, "invalid_type"),
    param("logit_bias", "x", "invalid_type"), param("logit_bias", {"50256": 500}, where="logit_bias.50256"),
    param("stream_options", "x", "invalid_type"), param("metadata", "x", "invalid_type"),
    param("logprobs", "yes", "invalid_type"), param("top_logprobs", 50),
    param("api_base", "http://127.0.0.1:1", "unsupported_parameter"), param("guardrails", ["\u2603"], "unsupported_parameter"),
    param("timeout", "soon", "unsupported_parameter"), param("num_retries", 1000, "unsupported_parameter"),
    param("mock_response", "fake answer", "unsupported_parameter"),
]

SIZE = [
    Bad("body-over-limit", 413, raw=json.dumps(message(content="x" * LIMIT)).encode(), param=None, code="request_too_large"),
    Bad("chunked-body-over-limit", 413, raw=None, body=huge_chunks, param=None, code="request_too_large"),
]

KEYS = [
    Bad("no-authorization", 401, OK, headers={}),
    Bad("bearer-without-key", 401, OK, headers={"Authorization": "Bearer"}),
    Bad("wrong-key", 401, OK, headers=auth("sk-wrong-0000000000000000")),
    Bad("master-key-prefix", 401, OK, headers=auth(MASTER_KEY[:-1])),
    Bad("master-key-plus-junk", 401, OK, headers={"Authorization": f"Bearer {MASTER_KEY} extra"}),
    Bad("key-without-scheme", 401, OK, headers={"Authorization": MASTER_KEY}),
    Bad("basic-scheme", 401, OK, headers={"Authorization": "Basic dXNlcjpwYXNz"}),
    Bad("non-ascii-key", 401, OK, headers={"Authorization": b"Bearer \xff\xfe\xfd"}),
    Bad("8kb-key", 401, OK, headers=auth("sk-" + "a" * 8000)),
    Bad("wrong-x-api-key", 401, OK, headers={"x-api-key": "sk-nope-000000"}),
    Bad("wrong-key-in-query", 401, OK, headers={}, query="?api_key=sk-nope-000000"),
]

CORPUS = INVALID_JSON + MISSING_AND_MODEL + MESSAGES + PARAMETERS + SIZE + KEYS


def send(gateway, case: Bad) -> httpx.Response:
    url, headers = f"{gateway.url}/v1/chat/completions{case.query}", {"content-type": "application/json", **case.headers}
    if case.raw is not None:
        content = case.raw
    elif callable(case.body):
        content = case.body()  # a generator: sent chunked, without Content-Length
    else:
        content = json.dumps(case.body).encode()
    return httpx.post(url, content=content, headers=headers, timeout=30)


def test_corpus_has_at_least_sixty_cases():
    assert len(CORPUS) >= 60
    assert len({case.id for case in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize("case", CORPUS, ids=lambda case: case.id)
def test_bad_input_gets_openai_4xx_and_never_reaches_a_backend(gateway, ollama, deepseek, case):
    response = send(gateway, case)
    error = assert_openai_error(response, case.status)
    if case.param is not ANY:
        assert error["param"] == case.param, error
    if case.code is not ANY:
        assert error["code"] == case.code, error
    assert response.headers["x-request-id"]
    assert (ollama.chats(), deepseek.chats()) == (0, 0)
    assert httpx.get(f"{gateway.url}/health/liveliness", timeout=5).status_code == 200


def test_messages_say_what_to_fix(gateway):
    cases = {"temperature": (chat(temperature=5), "'temperature' must be between 0 and 2, got 5."),
             "role": (message(role="wizard"), "'messages[0].role' must be one of system, developer, user, assistant, tool, function"),
             "size": (message(content="x" * LIMIT), "raise MAX_BODY_BYTES")}
    for name, (body, expected) in cases.items():
        response = httpx.post(f"{gateway.url}/v1/chat/completions", json=body, headers=auth(), timeout=30)
        assert expected in response.json()["error"]["message"], name


def test_gateway_routes_normally_after_the_corpus(gateway, ollama, deepseek):
    """No bad input marked a backend down or broke the worker."""
    health = httpx.get(f"{gateway.url}/health", timeout=5)
    assert (health.status_code, health.json()["status"]) == (200, "healthy")
    raw = gateway.client().chat.completions.with_raw_response.create(model="auto", messages=SHORT)
    assert (raw.headers["x-gateway-route"], raw.headers["x-gateway-reason"]) == ("local", "simple")
    assert raw.parse().choices[0].message.content.startswith("Hello from qwen2.5:7b.")
