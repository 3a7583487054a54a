"""Unit tests of gateway.errors and proxy_config.chat_checks: plain data and tiny ASGI apps, no gateway."""

from __future__ import annotations

import gzip
import json

import pytest
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.testclient import TestClient

from proxy_config.chat_checks import RequestRejected, check_chat, check_json, largest_output_tokens
from gateway.error_layer import ErrorLayer, RequestLimits
from gateway.errors import clean_message, error_type

LIMITS = RequestLimits(max_body_bytes=2048)
VALID = b'{"model": "auto", "messages": [{"role": "user", "content": "hi"}]}'
KEY = {"Authorization": "Bearer sk-test-000000"}


def client(app, limits: RequestLimits = LIMITS) -> TestClient:
    return TestClient(ErrorLayer(app, limits), raise_server_exceptions=False)


def respond(response):
    async def app(scope, receive, send):
        await response(scope, receive, send)
    return app


def shaped(response, status: int) -> dict:
    assert response.status_code == status
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["type"] == error_type(status)
    return body["error"]


@pytest.mark.parametrize("status,kind", [(400, "invalid_request_error"), (401, "authentication_error"), (404, "not_found_error"),
                                         (413, "request_too_large"), (429, "rate_limit_error"), (500, "server_error"),
                                         (503, "service_unavailable_error"), (504, "timeout_error"), (418, "invalid_request_error")])
def test_error_type_follows_the_status(status, kind):
    assert error_type(status) == kind


def test_clean_message_cuts_traces_and_debug_text_and_masks_keys():
    raw = ('litellm.BadRequestError: DeepseekException - {"error":{"message":"Invalid temperature","type":"x"}}\n\n'
           "LiteLLM: model group deepseek-chat failed. Received Model Group=deepseek-chat")
    assert clean_message(raw) == "DeepSeek: Invalid temperature"
    traced = "litellm.APIConnectionError: boom Traceback (most recent call last):\n  File \"/x/y.py\", line 1"
    assert clean_message(traced) == "boom"
    assert clean_message("key sk-abcdef123456 and Bearer abcdefghijkl") == "key sk-*** and Bearer ***"
    assert clean_message("500: {'error': 'DB not connected'}") == "DB not connected"


@pytest.mark.parametrize("response,status,fragment", [
    (JSONResponse({"detail": "Not Found"}, 404), 404, "is not a route of this gateway"),
    (JSONResponse({"detail": [{"loc": ["body", "x"], "msg": "field required"}]}, 422), 422, "x: field required"),
    (PlainTextResponse("Internal Server Error", 500), 500, "request id"),
    (HTMLResponse("<html><body><h1>Bad Gateway</h1></body></html>", 502), 502, "Bad Gateway"),
    (JSONResponse({"error": {"message": "slow down", "type": "whatever", "code": "429"}}, 429), 429, "slow down"),
    (JSONResponse({"error": "plain string"}, 503), 503, "plain string"),
])
def test_every_error_response_becomes_openai_shaped_with_its_status(response, status, fragment):
    error = shaped(client(respond(response)).get("/v1/x"), status)
    assert fragment in error["message"]


def test_gzip_error_bodies_are_decoded_before_rewriting():
    body = gzip.compress(json.dumps({"detail": "teapot trouble"}).encode())
    response = Response(body, 400, headers={"content-encoding": "gzip"}, media_type="application/json")
    error = shaped(client(respond(response)).get("/v1/x"), 400)
    assert error["message"] == "teapot trouble"


def test_success_passes_through_byte_for_byte():
    payload = b'{"id": "x",  "odd spacing": true}'
    response = client(respond(Response(payload, 200, media_type="application/json"))).get("/v1/x")
    assert (response.status_code, response.content) == (200, payload)


def test_exception_in_the_inner_app_becomes_a_500_without_trace():
    async def broken(scope, receive, send):
        raise RuntimeError("secret internals")
    response = client(broken).get("/v1/x")
    assert "secret internals" not in shaped(response, 500)["message"]


def sse(*events: bytes, fail: bool = False):
    async def stream():
        for event in events:
            yield event
        if fail:
            raise RuntimeError("upstream died")
    return respond(StreamingResponse(stream(), media_type="text/event-stream"))


def events_of(response) -> list[str]:
    return [line[6:] for line in response.text.split("\n") if line.startswith("data: ")]


def test_stream_that_ends_without_done_gets_an_error_event():
    events = events_of(client(sse(b'data: {"choices": []}\n\n')).post("/v1/chat/completions", content=VALID))
    assert json.loads(events[-1])["error"]["code"] == "stream_incomplete"


def test_stream_that_raises_midway_ends_with_an_error_event():
    events = events_of(client(sse(b'data: {"choices": []}\n\n', fail=True)).post("/v1/chat/completions", content=VALID))
    assert json.loads(events[-1])["error"]["code"] == "stream_incomplete"


def test_complete_stream_is_untouched_and_litellm_error_events_are_normalized():
    done = events_of(client(sse(b'data: {"choices": []}\n\n', b"data: [DONE]\n\n")).post("/v1/chat/completions", content=VALID))
    assert done == ['{"choices": []}', "[DONE]"]
    litellm_error = b'data: {"error": {"message": "litellm.APIConnectionError: APIConnectionError: OllamaException - cut", "type": null, "code": "500"}}\n\n'
    error = json.loads(events_of(client(sse(litellm_error)).post("/v1/chat/completions", content=VALID))[-1])["error"]
    assert (error["type"], error["code"]) == ("server_error", "stream_interrupted")
    assert "Ollama: cut" in error["message"] and "litellm" not in error["message"]


def echo():
    async def app(scope, receive, send):
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await JSONResponse({"got": body.decode()})(scope, receive, send)
    return app


def test_the_inner_app_receives_the_exact_body():
    body = json.dumps({"model": "auto", "messages": [{"role": "user", "content": "héllo"}]}, ensure_ascii=False).encode()
    response = client(echo()).post("/v1/chat/completions", content=body, headers=KEY)
    assert response.json()["got"] == body.decode()


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_bodies_over_the_limit_get_413_before_the_inner_app(chunked):
    body = b'{"x": "' + b"a" * 4096 + b'"}'
    content = iter([body[:1000], body[1000:]]) if chunked else body
    error = shaped(client(echo()).post("/v1/embeddings", content=content), 413)
    assert error["code"] == "request_too_large" and "2048 bytes" in error["message"]


def test_parameter_checks_apply_whatever_header_carried_the_key():
    """gateway.gate answers 401 before this layer; every request it lets through is checked."""
    bad = json.dumps({"model": "auto", "messages": "hi"}).encode()
    for headers in ({}, KEY, {"x-goog-api-key": "sk-test-000000"}, {"x-litellm-api-key": "sk-test-000000"}):
        assert shaped(client(echo()).post("/v1/chat/completions", content=bad, headers=headers), 400)["param"] == "messages"
    assert shaped(client(echo()).post("/v1/chat/completions", content=b"[1]"), 400)["code"] == "invalid_type"


VALID_BODIES = [
    {"model": "auto", "messages": [{"role": "user", "content": "hi"}]},
    {"model": "auto", "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
     "temperature": 0, "top_p": 1, "max_tokens": 1, "n": 1, "stream": True, "stream_options": {"include_usage": True},
     "stop": ["\n"], "seed": 7, "user": "u1", "presence_penalty": -2, "frequency_penalty": 2, "logprobs": False},
    {"model": "deepseek-chat", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "what is this"}, {"type": "image_url", "image_url": {"url": "data:,"}}]},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "42"},
        {"role": "developer", "content": "answer"}],
     "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}], "tool_choice": "auto",
     "response_format": {"type": "json_object"}, "logit_bias": {"50256": -100}, "metadata": {"app": "x"},
     "temperature": None, "max_tokens": None, "unknown_vendor_field": {"kept": True}},
]


@pytest.mark.parametrize("body", VALID_BODIES, ids=["minimal", "all-scalars", "tools-and-parts"])
def test_valid_openai_requests_pass_the_checks(body):
    check_chat(check_json(json.dumps(body).encode(), 64, required=True), max_output_tokens=8192)


def test_max_tokens_bound_is_the_largest_configured_output():
    config = {"model_list": [{"model_info": {"max_output_tokens": 4096}}, {"model_info": None}, {"model_info": {"max_output_tokens": 65536}}]}
    assert largest_output_tokens(config) == 65536
    with pytest.raises(RequestRejected) as caught:
        check_chat({"model": "auto", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 65537}, max_output_tokens=65536)
    assert (caught.value.param, caught.value.message) == ("max_tokens", "'max_tokens' must be between 1 and 65536, got 65537.")
