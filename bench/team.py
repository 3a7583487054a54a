"""`python -m bench team`: the team-load benchmark of issue 12.

A team of N users (N = 1, 4, 8, 16), each sending one chat request a minute on average (Poisson
arrivals), 70% simple (a short question) and 30% complex (a long prompt, over the complexity
threshold), answers of 150-400 tokens (uniform; sent as max_tokens, which Ollama honours as
num_predict), against the realistic Ollama emulator with 2 runner slots (OLLAMA_NUM_PARALLEL as
the Ansible role sets it) and the DeepSeek emulator. Three configurations see the same arrivals:

- `local-first`: this gateway with spill-over off (`local_max_wait_seconds: 0`), the original
  design: simple requests local, complex ones to the cloud, the other tier on error only;
- `vanilla`: LiteLLM's proxy with the same two models, the local one limited to its 2 slots
  (`max_parallel_requests`, which answers 429 when they are busy) and falling back to the cloud;
  clients name the local model (vanilla LiteLLM has no complexity routing);
- `gateway`: this gateway as shipped (spill-over at `local_max_wait_seconds`, default 5 s);
  `gateway-Xs` rows (`--other-wait X`) are the gateway with another threshold, to choose the default.

Speed: a 7B model (Q4) on a 12-core CPU generates about 10-20 tokens/s per stream (issue 12's
figure for the target host; llama.cpp's CPU benchmarks of 7B Q4_0 are in that range), so the
emulator runs at `TOKENS_PER_SECOND` = 12 per stream; prompts are read at 100 tokens/s; the
cloud streams at 50 tokens/s and answers as long as the local model would. Time is compressed by
`speedup` (default 5): arrival rates, token rates and the spill threshold are all multiplied by it,
so their ratios, and every latency divided by the real one, stay those of the real team; results
are reported in real seconds. The compression is bounded by the machine: every token is a stream
chunk the gateway handles, and at 20x (480 chunks/s from 2 slots) a 2-core machine's gateway
became the bottleneck, which distorts the ratios the benchmark must keep.

Cost: each request is priced as if its prompt and answer tokens were billed at config.yaml's
deepseek-chat prices when the cloud served it; cloud-only is every request on the cloud.

How it fails: a server that does not start raises RuntimeError with its log tail; a request
that fails counts as an error in its row (never as a fast answer). Every process started is
stopped on the way out.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

from bench.targets import BIN, DEEPSEEK_KEY, MASTER_KEY, REPO, Server, _base_env, _port

TOKENS_PER_SECOND = 12.0  # one stream of a 7B Q4 model on a 12-core CPU (see the docstring)
PROMPT_TOKENS_PER_SECOND = 100.0
CLOUD_TOKENS_PER_SECOND = 50.0
SLOTS = 2
USERS = (1, 4, 8, 16)
CONFIGURATIONS = ("local-first", "vanilla", "gateway")
SIMPLE = "Explain in a few sentences what a Python list comprehension is."
COMPLEX = "Review this design and list its risks, with reasons: " + "The service stores sessions in memory. " * 40


@dataclass(frozen=True)
class Arrival:
    at: float  # real seconds after the start
    complex: bool
    answer_tokens: int


def arrivals(users: int, requests: int, seed: int) -> list[Arrival]:
    """Poisson arrivals of `users` users at one request a minute each."""
    rng = random.Random(seed * 1000 + users)
    now, out = 0.0, []
    for _ in range(requests):
        now += rng.expovariate(users / 60.0)
        out.append(Arrival(now, rng.random() < 0.3, rng.randint(150, 400)))
    return out


def requests_for(users: int, minimum: int) -> int:
    return max(minimum, 10 * users)  # ten minutes of the team's work: a 40-request p95 moves by tens of %


@dataclass
class Result:
    ttft: float | None
    total: float
    route: str  # local | cloud | error
    prompt_tokens: int
    answer_tokens: int
    error: str = ""  # why a failed request failed: its status and message, or the stream's error event


async def one(client: httpx.AsyncClient, url: str, key: str, model: str, arrival: Arrival) -> Result:
    prompt = COMPLEX if arrival.complex else SIMPLE
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "stream": True,
            "max_tokens": arrival.answer_tokens}
    started, ttft, route, error = time.perf_counter(), None, "error", ""
    try:
        async with client.stream("POST", f"{url}/v1/chat/completions", json=body,
                                 headers={"Authorization": f"Bearer {key}"}) as response:
            if response.status_code != 200:
                error = f"{response.status_code} {(await response.aread())[:200].decode(errors='replace')}"
            else:
                route = response.headers.get("x-gateway-route") or ""
                async for line in response.aiter_lines():
                    if not line.startswith("data: {"):
                        continue
                    chunk = json.loads(line[6:])
                    if "error" in chunk:  # a stream cut by an error event is a failed request, not an answer
                        ttft, error = None, f"stream error event after {time.perf_counter() - started:.1f} s: " \
                            f"{json.dumps(chunk['error'])[:200]}"
                        break
                    route = route or ("cloud" if "deepseek" in str(chunk.get("model")) else "local")
                    delta = (chunk.get("choices") or [{}])[0].get("delta") or {}
                    if ttft is None and delta.get("content"):
                        ttft = time.perf_counter() - started
                if ttft is None:
                    route, error = "error", error or "the stream ended without content"
    except httpx.HTTPError as exc:
        route, error = "error", f"{type(exc).__name__}: {exc}"
    return Result(ttft, time.perf_counter() - started, route, len(prompt) // 4, arrival.answer_tokens, error)


async def drive(url: str, key: str, model: str, schedule: list[Arrival], speedup: float) -> list[Result]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(600.0), limits=httpx.Limits(max_connections=200)) as client:
        start = time.perf_counter()

        async def at(arrival: Arrival) -> Result:
            await asyncio.sleep(max(0.0, start + arrival.at / speedup - time.perf_counter()))
            result = await one(client, url, key, model, arrival)
            return Result(None if result.ttft is None else result.ttft * speedup, result.total * speedup, result.route,
                          result.prompt_tokens, result.answer_tokens, result.error)

        return list(await asyncio.gather(*(at(a) for a in schedule)))


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def summarize(results: list[Result], prices: tuple[float, float]) -> dict:
    ok = [r for r in results if r.route != "error"]
    local = [r for r in ok if r.route == "local"]
    cloud_cost = sum(r.prompt_tokens * prices[0] + r.answer_tokens * prices[1] for r in ok if r.route == "cloud")
    cloud_only = sum(r.prompt_tokens * prices[0] + r.answer_tokens * prices[1] for r in results)
    return {
        "requests": len(results), "errors": len(results) - len(ok),
        "error_reasons": sorted({r.error for r in results if r.route == "error"}),
        "ttft_p50": percentile([r.ttft for r in ok if r.ttft is not None], 50),
        "ttft_p95": percentile([r.ttft for r in ok if r.ttft is not None], 95),
        "total_p95": percentile([r.total for r in ok], 95),
        "local_share": len(local) / len(results) if results else 0.0,
        "local_token_share": sum(r.answer_tokens for r in local) / max(1, sum(r.answer_tokens for r in results)),
        "cloud_cost_per_1k": 1000 * cloud_cost / len(results) if results else 0.0,
        "cloud_only_cost_per_1k": 1000 * cloud_only / len(results) if results else 0.0,
    }


def cloud_prices() -> tuple[float, float]:
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    info = next(m["model_info"] for m in config["model_list"] if m["model_name"] == "deepseek-chat")
    return float(info["input_cost_per_token"]), float(info["output_cost_per_token"])


def emulator(module: str, args: list[str], workdir: Path) -> tuple[subprocess.Popen, str]:
    port = _port()
    log = (workdir / f"{module.rsplit('.', 1)[1]}.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", module, "--port", str(port), *args], cwd=REPO, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/_emulator/stats", timeout=1).raise_for_status()
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{module} did not start:\n{(workdir / log.name).read_text()[-2000:]}")


def gateway_server(name: str, workdir: Path, ollama: str, cloud: str, max_wait: float) -> Server:
    port, cwd = _port(), workdir / name
    cwd.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["gateway_settings"] = {**config.get("gateway_settings", {}), "local_slots": SLOTS,
                                  "local_max_wait_seconds": max_wait}
    (cwd / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    env = {**_base_env(), "HOST": "127.0.0.1", "PORT": str(port), "OLLAMA_URL": ollama, "DEEPSEEK_URL": cloud,
           "DEEPSEEK_API_KEY": DEEPSEEK_KEY, "LITELLM_MASTER_KEY": MASTER_KEY, "DATA_DIR": str(cwd / "data")}
    cmd = [str(BIN / "gateway"), "serve", "--config", str(cwd / "config.yaml")]
    return Server(name, f"http://127.0.0.1:{port}", None, None, cmd, env, cwd)


def vanilla_server(workdir: Path, ollama: str, cloud: str) -> Server:
    port, cwd = _port(), workdir / "vanilla"
    cwd.mkdir(parents=True, exist_ok=True)
    config = {
        "model_list": [
            {"model_name": "qwen2.5:7b", "litellm_params": {"model": "ollama_chat/qwen2.5:7b", "api_base": ollama,
                                                            "max_parallel_requests": SLOTS}},
            {"model_name": "deepseek-chat", "litellm_params": {"model": "deepseek/deepseek-chat", "api_base": cloud,
                                                               "api_key": DEEPSEEK_KEY}},
        ],
        "router_settings": {"fallbacks": [{"qwen2.5:7b": ["deepseek-chat"]}, {"deepseek-chat": ["qwen2.5:7b"]}],
                            "num_retries": 0},
        "general_settings": {"master_key": "os.environ/LITELLM_MASTER_KEY"},
    }
    (cwd / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    env = {**_base_env(), "LITELLM_MASTER_KEY": MASTER_KEY, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    cmd = [str(BIN / "litellm"), "--config", str(cwd / "config.yaml"), "--host", "127.0.0.1", "--port", str(port)]
    return Server("vanilla", f"http://127.0.0.1:{port}", None, None, cmd, env, cwd)


def run(users: tuple[int, ...] = USERS, min_requests: int = 20, speedup: float = 5.0, max_wait: float = 5.0,
        configurations: tuple[str, ...] = CONFIGURATIONS, seed: int = 1, progress=print,
        other_waits: tuple[float, ...] = ()) -> dict:
    """Every configuration against the same arrivals; numbers in real (uncompressed) seconds."""
    prices = cloud_prices()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-team-") as tmp:
        workdir = Path(tmp)
        procs = []
        try:
            ollama_proc, ollama = emulator("emulators.ollama", [
                "--num-parallel", str(SLOTS), "--tokens-per-second", str(TOKENS_PER_SECOND * speedup),
                "--prompt-tokens-per-second", str(PROMPT_TOKENS_PER_SECOND * speedup), "--reply-tokens", "400",
                "--models", "qwen2.5:7b,llama3.2:3b"], workdir)
            procs.append(ollama_proc)
            cloud_proc, cloud = emulator("emulators.deepseek", ["--delay", str(1 / (CLOUD_TOKENS_PER_SECOND * speedup)),
                                                                "--reply-tokens", "400"], workdir)
            procs.append(cloud_proc)
            waits = {**{name: max_wait for name in configurations}, **{f"gateway-{w:g}s": w for w in other_waits}}
            for name, wait in waits.items():
                if name == "vanilla":
                    server, model, key = vanilla_server(workdir, ollama, cloud), "qwen2.5:7b", MASTER_KEY
                else:
                    wait = 0.0 if name == "local-first" else wait / speedup
                    server, model, key = gateway_server(name, workdir, ollama, cloud, wait), "auto", MASTER_KEY
                server.start()
                try:
                    asyncio.run(drive(server.url, key, model, arrivals(1, 2, seed + 99), speedup))  # warm-up
                    for n in users:
                        schedule = arrivals(n, requests_for(n, min_requests), seed)
                        progress(f"{name}: {n} users, {len(schedule)} requests")
                        results = asyncio.run(drive(server.url, key, model, schedule, speedup))
                        rows.append({"configuration": name, "users": n, **summarize(results, prices)})
                        for reason in rows[-1]["error_reasons"]:
                            progress(f"  error: {reason}")
                finally:
                    server.stop()
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(timeout=10)
    return {"options": {"users": list(users), "min_requests": min_requests, "speedup": speedup, "max_wait": max_wait,
                        "seed": seed, "slots": SLOTS, "tokens_per_second": TOKENS_PER_SECOND},
            "rows": rows}
