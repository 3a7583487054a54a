"""The response cache end to end: openai SDK, `gateway serve` with 2 workers, a real redis-server."""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest

from tests.cost.conftest import KEY_A, KEY_B, TTL
from tests.observability.helpers import scrape, wait_until


def ask(gw, key: str, text: str, headers: dict | None = None, **params):
    client = gw.client(key)
    raw = client.chat.completions.with_raw_response.create(
        model=params.pop("model", "auto"), messages=[{"role": "user", "content": text}], extra_headers=headers or {},
        **{"temperature": 0, **params})
    return raw.headers, raw.parse()


def unique(text: str = "What is the capital of France?") -> str:
    return f"{text} [{uuid.uuid4().hex[:8]}]"


def test_same_request_twice_is_one_backend_call_and_the_second_is_a_hit(cost_gateway, ollama):
    question = unique()
    first_headers, first = ask(cost_gateway, KEY_A, question)
    second_headers, second = ask(cost_gateway, KEY_A, question)
    assert (first_headers["x-gateway-cache"], second_headers["x-gateway-cache"]) == ("miss", "hit")
    assert ollama.chats() == 1
    assert second.choices[0].message.content == first.choices[0].message.content
    assert second.model == first.model == "qwen2.5:7b"
    assert second_headers["x-gateway-route"] == "local" and second_headers["x-gateway-reason"] == "simple"
    assert second.usage.prompt_tokens == first.usage.prompt_tokens


def sse_stream(gw, key: str, text: str) -> tuple[httpx.Headers, list[str]]:
    body = {"model": "auto", "messages": [{"role": "user", "content": text}], "temperature": 0, "stream": True}
    with httpx.stream("POST", f"{gw.url}/v1/chat/completions", json=body, timeout=30,
                      headers={"Authorization": f"Bearer {key}"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
        return response.headers, lines


def test_a_stream_hit_replays_as_sse_ending_in_done(cost_gateway, ollama):
    question = unique("Name three primary colours.")
    headers, answer = ask(cost_gateway, KEY_A, question)  # stored from a non-streamed answer
    assert headers["x-gateway-cache"] == "miss"
    stream_headers, lines = sse_stream(cost_gateway, KEY_A, question)
    assert stream_headers["x-gateway-cache"] == "hit"
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == answer.choices[0].message.content
    assert [c["choices"][0].get("finish_reason") for c in chunks if c["choices"] and c["choices"][0].get("finish_reason")] == ["stop"]
    assert ollama.chats() == 1
    # a streamed miss is stored too, and replays as a stream
    other = unique("Name three secondary colours.")
    first_headers, first_lines = sse_stream(cost_gateway, KEY_A, other)
    second_headers, second_lines = sse_stream(cost_gateway, KEY_A, other)
    assert (first_headers["x-gateway-cache"], second_headers["x-gateway-cache"]) == ("miss", "hit")
    assert second_lines[-1] == "data: [DONE]"
    assert ollama.chats() == 2


def test_no_cache_skips_the_cache_and_no_store_does_not_write_it(cost_gateway, ollama):
    question = unique()
    assert ask(cost_gateway, KEY_A, question)[0]["x-gateway-cache"] == "miss"
    assert ask(cost_gateway, KEY_A, question, {"Cache-Control": "no-cache"})[0]["x-gateway-cache"] == "bypass"
    assert ollama.chats() == 2
    fresh = unique()
    assert ask(cost_gateway, KEY_A, fresh, {"Cache-Control": "no-store"})[0]["x-gateway-cache"] == "miss"
    assert ask(cost_gateway, KEY_A, fresh)[0]["x-gateway-cache"] == "miss"
    assert ask(cost_gateway, KEY_A, fresh)[0]["x-gateway-cache"] == "hit"
    assert ollama.chats() == 4


def test_another_key_misses_under_per_key_scope(cost_gateway, ollama):
    question = unique()
    assert ask(cost_gateway, KEY_A, question)[0]["x-gateway-cache"] == "miss"
    assert ask(cost_gateway, KEY_B, question)[0]["x-gateway-cache"] == "miss"
    assert ask(cost_gateway, KEY_B, question)[0]["x-gateway-cache"] == "hit"
    assert ollama.chats() == 2


def test_sampled_answers_are_not_cached_unless_forced(cost_gateway, ollama):
    question = unique()
    for _ in range(2):
        assert ask(cost_gateway, KEY_A, question, temperature=0.9)[0]["x-gateway-cache"] == "bypass"
    assert ollama.chats() == 2
    client = cost_gateway.client(KEY_A)  # no temperature: the model's default (1.0), not cached either
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=[{"role": "user", "content": question}])
    assert raw.headers["x-gateway-cache"] == "bypass"
    forced = {"x-gateway-cache": "force"}
    assert ask(cost_gateway, KEY_A, question, forced, temperature=0.9)[0]["x-gateway-cache"] == "miss"
    assert ask(cost_gateway, KEY_A, question, forced, temperature=0.9)[0]["x-gateway-cache"] == "hit"
    assert ollama.chats() == 4


def test_a_cloud_answer_is_cached_under_the_cloud_model_group(cost_gateway, deepseek, ollama):
    question = unique("x" * 600)  # complex: the cloud serves it
    first_headers, first = ask(cost_gateway, KEY_A, question)
    second_headers, second = ask(cost_gateway, KEY_A, question)
    assert (first_headers["x-gateway-route"], first_headers["x-gateway-cache"]) == ("cloud", "miss")
    assert (second_headers["x-gateway-route"], second_headers["x-gateway-cache"]) == ("cloud", "hit")
    assert second.model == "deepseek-chat"
    assert (deepseek.chats(), ollama.chats()) == (1, 0)
    # the same text to a local model is another model group: a miss, served locally
    assert ask(cost_gateway, KEY_A, question, model="qwen2.5:7b", max_tokens=50)[0]["x-gateway-cache"] == "miss"


def test_cache_ttl_header_shortens_the_ttl(cost_gateway, redis_server, ollama):
    question = unique()
    assert ask(cost_gateway, KEY_A, question, {"x-gateway-cache-ttl": "1"})[0]["x-gateway-cache"] == "miss"
    time.sleep(2.5)  # Redis expired the entry (SET EX 1)
    assert ask(cost_gateway, KEY_A, question)[0]["x-gateway-cache"] == "miss"
    ttls = [redis_server.client().ttl(k) for k in redis_server.client().scan_iter("gateway:cache:*")]
    assert ttls and max(ttls) <= TTL
    assert ollama.chats() == 2


def test_a_bad_cache_ttl_header_is_a_400_that_says_what_to_send(cost_gateway, ollama):
    response = httpx.post(f"{cost_gateway.url}/v1/chat/completions", timeout=30,
                          headers={"Authorization": f"Bearer {KEY_A}", "x-gateway-cache-ttl": "soon"},
                          json={"model": "auto", "temperature": 0, "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 400
    error = response.json()["error"]
    assert "x-gateway-cache-ttl must be a whole number of seconds" in error["message"]
    assert error["code"] == "invalid_cache_ttl"
    assert ollama.chats() == 0


def test_cache_results_are_counted_in_metrics(cost_gateway):
    def value(result: str) -> float:
        return scrape(cost_gateway).get(("gateway_cache_requests_total", (("result", result),)), 0.0)

    before = {r: value(r) for r in ("hit", "miss", "bypass")}
    question = unique()
    ask(cost_gateway, KEY_A, question)
    ask(cost_gateway, KEY_A, question)
    ask(cost_gateway, KEY_A, question, {"Cache-Control": "no-cache"})
    wait_until(lambda: all(value(r) == before[r] + 1 for r in before), "cache metrics of 3 requests")


@pytest.mark.parametrize("mode", ["cut", "malformed", "error_mid_stream"])
def test_a_broken_stream_is_never_stored(cost_gateway, ollama, deepseek, mode):
    question = unique("Count to five.")
    ollama.fault(mode, after_tokens=2)
    deepseek.fault(mode, after_tokens=2)
    body = {"model": "qwen2.5:7b", "messages": [{"role": "user", "content": question}], "temperature": 0, "stream": True}
    with httpx.stream("POST", f"{cost_gateway.url}/v1/chat/completions", json=body, timeout=30,
                      headers={"Authorization": f"Bearer {KEY_A}"}) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert response.status_code != 200 or "data: [DONE]" not in lines  # the client saw it broken
    ollama.reset()
    deepseek.reset()
    time.sleep(2)  # let the broken request's callbacks finish before asking again
    headers, _ = ask(cost_gateway, KEY_A, question, model="qwen2.5:7b")
    assert headers["x-gateway-cache"] == "miss"
