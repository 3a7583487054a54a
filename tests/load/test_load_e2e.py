"""Load-aware spill-over, local-only and cancellation, end to end: the openai SDK against
`gateway serve`, the realistic Ollama emulator (runner slots, queue, token rate) and the
DeepSeek emulator (issue 12's acceptance)."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
import yaml

from emulators import deepseek as deepseek_emulator
from emulators import ollama as ollama_emulator
from emulators._server import serve_in_thread
from tests.harness import DEEPSEEK_KEY, Emulator, Gateway, write_config
from tests.redis_server import RedisServer

SIMPLE = [{"role": "user", "content": "Say hello."}]


@pytest.fixture(scope="module")
def slow_ollama():
    server = serve_in_thread(ollama_emulator.create_app())
    yield Emulator(server)
    server.stop()


@pytest.fixture(scope="module")
def cloud():
    server = serve_in_thread(deepseek_emulator.create_app(api_key=DEEPSEEK_KEY))
    yield Emulator(server)
    server.stop()


def configure(emulator: Emulator, **config) -> None:
    emulator.reset()
    httpx.post(f"{emulator.url}/_emulator/config", json=config).raise_for_status()


def env(ollama: Emulator, cloud: Emulator, **extra: str) -> dict[str, str]:
    return {"OLLAMA_URL": ollama.url, "DEEPSEEK_URL": cloud.url, "DEEPSEEK_API_KEY": DEEPSEEK_KEY, **extra}


@pytest.fixture(scope="module")
def one_slot_gateway(slow_ollama, cloud, tmp_path_factory):
    directory = tmp_path_factory.mktemp("one-slot")
    config = write_config(directory, local_slots=1)
    keys = directory / "keys.yaml"
    keys.write_text(yaml.safe_dump({"keys": [{"name": "private", "key": "sk-private-test-1234567890abcdef", "local_only": True},
                                             {"name": "team", "key": "sk-team-test-abcdef1234567890"}]}))
    gw = Gateway("load", env(slow_ollama, cloud, KEYS_FILE=str(keys)), config=config)
    yield gw.wait_ready()
    gw.stop()


def wait_until(check, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def ledger_line(gw: Gateway, request_id: str) -> dict:
    for line in gw.log().splitlines():
        if request_id in line and '"message": "request"' in line:
            return json.loads(line)
    return {}


def chat(gw: Gateway, **kwargs):
    started = time.monotonic()
    raw = gw.client().chat.completions.with_raw_response.create(model="auto", messages=SIMPLE, **kwargs)
    return raw, time.monotonic() - started


def test_six_simultaneous_requests_spill_to_the_cloud_and_come_back(one_slot_gateway, slow_ollama, cloud):
    configure(slow_ollama, num_parallel=1, tokens_per_second=20, reply_tokens=60)  # ~3 s per answer
    first, _ = chat(one_slot_gateway)  # the gateway measures the model's speed and answer length
    assert first.headers["x-gateway-route"] == "local"
    per_answer = first.parse().usage.completion_tokens / 20
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda _: chat(one_slot_gateway), range(6)))
    routes = [(raw.headers["x-gateway-route"], raw.headers["x-gateway-reason"]) for raw, _ in results]
    assert all(raw.status_code == 200 for raw, _ in results)
    assert ("local", "simple") in routes and ("cloud", "local-busy") in routes, routes
    assert {route for route in routes if route[0] == "cloud"} == {("cloud", "local-busy")}
    slowest = max(elapsed for _, elapsed in results)
    assert slowest < 6 * per_answer / 2, (slowest, routes)  # all six queued locally take 6 answers' time
    assert slow_ollama.stats()["max_running"] == 1
    assert wait_until(lambda: slow_ollama.stats()["running"] == 0, 10)
    again, _ = chat(one_slot_gateway)
    assert (again.headers["x-gateway-route"], again.headers["x-gateway-reason"]) == ("local", "simple")
    metrics = httpx.get(f"{one_slot_gateway.url}/metrics").text
    assert 'gateway_spills_total{reason="local-busy"}' in metrics
    assert 'gateway_local_tokens_per_second{model="qwen2.5:7b"}' in metrics


@pytest.mark.parametrize("stream", [False, True])
def test_a_client_that_gives_up_frees_the_runner_slot(one_slot_gateway, slow_ollama, stream):
    configure(slow_ollama, num_parallel=1)
    chat(one_slot_gateway)  # warm: the first request of a fresh gateway is slower
    configure(slow_ollama, num_parallel=1, tokens_per_second=10, reply_tokens=200)  # 20 s per answer
    client = one_slot_gateway.client(timeout=1.0)
    request_id = None
    gave_up = None
    try:
        if stream:  # tokens keep coming, so the client gives up after reading for 1 s
            started = time.monotonic()
            with client.chat.completions.with_streaming_response.create(model="auto", messages=SIMPLE, stream=True) as raw:
                request_id = raw.headers["x-request-id"]
                for _ in raw.iter_lines():
                    if time.monotonic() - started > 1.0:
                        break
            gave_up = time.monotonic()
        else:
            client.chat.completions.create(model="auto", messages=SIMPLE)
    except (openai.APITimeoutError, httpx.ReadTimeout):
        gave_up = time.monotonic()
    assert gave_up is not None, "the answer takes 20 s; the client must have timed out"
    assert wait_until(lambda: slow_ollama.stats()["running"] == 0, 1.0), slow_ollama.stats()
    freed_after = time.monotonic() - gave_up
    assert freed_after <= 1.0
    assert slow_ollama.stats()["cancelled"] == 1
    assert wait_until(lambda: "client-cancelled" in one_slot_gateway.log(), 5)
    if request_id is not None:
        record = ledger_line(one_slot_gateway, request_id)
        assert (record.get("error_type"), record.get("status")) == ("client-cancelled", 499), record


def test_local_only_by_header_and_by_key_never_reaches_the_cloud(one_slot_gateway, slow_ollama, cloud):
    configure(slow_ollama, num_parallel=1)
    slow_ollama.fault("http_500")
    cloud.reset()
    team = one_slot_gateway.client(key="sk-team-test-abcdef1234567890")
    fallback = team.chat.completions.with_raw_response.create(model="auto", messages=SIMPLE)
    assert fallback.headers["x-gateway-route"] == "cloud"  # without local-only the cloud takes over
    assert cloud.chats() == 1
    cloud.reset()
    for client, headers in ((team, {"x-gateway-local-only": "true"}),
                            (one_slot_gateway.client(key="sk-private-test-1234567890abcdef"), {})):
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(model="auto", messages=SIMPLE, extra_headers=headers)
        assert caught.value.status_code == 503
        assert "local-only" in caught.value.message, caught.value.message
    big = [{"role": "user", "content": "x " * 2000}]  # complex: would go to the cloud
    with pytest.raises(openai.APIStatusError) as caught:
        team.chat.completions.create(model="auto", messages=big, extra_headers={"x-gateway-local-only": "true"})
    assert caught.value.status_code == 503 and "local-only" in caught.value.message
    assert cloud.chats() == 0


@pytest.fixture(scope="module")
def redis_server():
    server = RedisServer("inflight").start()
    yield server
    server.stop()


def test_two_workers_with_redis_never_exceed_the_runner_slots(slow_ollama, cloud, redis_server, tmp_path):
    configure(slow_ollama, num_parallel=2, tokens_per_second=50, reply_tokens=100)  # 2 s per answer
    config = write_config(tmp_path, local_slots=2, local_max_wait_seconds=0.01)  # any queueing spills
    gw = Gateway("load-redis", env(slow_ollama, cloud, REDIS_URL=redis_server.url), config=config, workers=2).wait_ready(timeout=240)
    try:
        seen, done = [], threading.Event()

        def watch() -> None:  # the leases both workers take live in Redis
            while not done.is_set():
                seen.append(redis_server.client().zcard("gateway:inflight:ollama"))
                time.sleep(0.02)

        watcher = threading.Thread(target=watch)
        watcher.start()
        with ThreadPoolExecutor(10) as pool:
            results = list(pool.map(lambda _: chat(gw), range(10)))
        done.set()
        watcher.join()
        assert max(seen) >= 1
        routes = [raw.headers["x-gateway-route"] for raw, _ in results]
        assert all(raw.status_code == 200 for raw, _ in results)
        stats = slow_ollama.stats()  # Ollama never had more requests than its slots: none ever waited in its queue
        assert (stats["max_running"], stats["max_queued"]) == (2, 0), stats
        assert 1 <= routes.count("local") <= 10 and "cloud" in routes, routes
        assert wait_until(lambda: redis_server.client().zcard("gateway:inflight:ollama") == 0, 5)
    finally:
        gw.stop()
