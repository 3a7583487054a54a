"""Quick checks of the benchmark's parts (the full benchmark is `python -m bench`, not a test).

- the routing micro-benchmark runs and decides as the policy does;
- the canned nginx backend answers JSON, NDJSON and SSE the way the gateways need;
- a one-second wrk run against it reports latencies, and the report maths is right.
"""

from __future__ import annotations

import shutil

import httpx
import pytest

from bench import backend, report, routing
from bench.load import Request, stream_probe, wrk
from bench.targets import hooks_off, ollama_body
from tests.harness import free_port


def test_routing_micro_benchmark_times_the_policys_real_decisions():
    rows = routing.run(sizes=(100, 20_000), number=20, repeat=1)
    by_key = {(r["shape"], r["chars"]): r for r in rows}
    assert len(rows) == 4
    assert (by_key[("one-message", 100)]["route"], by_key[("one-message", 100)]["reason"]) == ("local", "simple")
    assert (by_key[("one-message", 20_000)]["route"], by_key[("one-message", 20_000)]["reason"]) == ("cloud", "complexity")
    assert by_key[("conversation", 20_000)]["messages"] == 21  # system + 20 messages of 1,000 chars
    assert all(r["us"] > 0 for r in rows)
    assert "| one-message | 20,000 | 2 |" in routing.table(rows)


def test_hooks_off_removes_only_our_callbacks_and_custom_auth():
    config = {"litellm_settings": {"callbacks": ["hooks.routing.instance", "prometheus"], "drop_params": True},
              "general_settings": {"master_key": "os.environ/LITELLM_MASTER_KEY", "custom_auth": "hooks.auth.user_api_key_auth"}}
    off = hooks_off(config)
    assert off["litellm_settings"] == {"callbacks": ["prometheus"], "drop_params": True}
    assert off["general_settings"] == {"master_key": "os.environ/LITELLM_MASTER_KEY"}
    assert config["litellm_settings"]["callbacks"] == ["hooks.routing.instance", "prometheus"]  # input untouched


@pytest.fixture(scope="module")
def canned(tmp_path_factory):
    if shutil.which(backend.NGINX) is None and not backend.Path(backend.NGINX).exists():
        pytest.skip("nginx is not installed (scripts/setup.sh installs it)")
    directory = tmp_path_factory.mktemp("canned")
    server = backend.CannedBackend(directory, free_port()).start()
    yield server
    server.stop()


def test_canned_backend_answers_json_or_stream_by_the_body(canned):
    plain = httpx.post(f"{canned.url}/api/chat", content=ollama_body(False))
    assert plain.status_code == 200 and plain.json()["done"] is True
    stream = httpx.post(f"{canned.url}/api/chat", content=ollama_body(True))
    assert stream.headers["content-type"] == "application/x-ndjson"
    assert len(stream.text.splitlines()) == backend.CHUNKS + 1
    sse = httpx.post(f"{canned.url}/v1/chat/completions", json={"model": "deepseek-chat", "stream": True})
    assert sse.headers["content-type"] == "text/event-stream"
    assert sse.text.count("data: ") == backend.CHUNKS + 3 and sse.text.endswith("data: [DONE]\n\n")
    tags = httpx.get(f"{canned.url}/api/tags").json()
    assert [m["name"] for m in tags["models"]] == list(backend.TAGS)


def test_wrk_and_stream_probe_measure_the_canned_backend(canned, tmp_path):
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (apt install wrk)")
    request = Request(canned.url, "/api/chat", ollama_body(False))
    result = wrk(request, tmp_path / "body.json", connections=2, seconds=1)
    assert result["requests"] > 100 and result["status_errors"] == 0
    assert 0 < result["p50_us"] <= result["p99_us"]
    probe = stream_probe(Request(canned.url, "/api/chat", ollama_body(True)), count=5)
    assert probe["requests"] == 5 and 0 < probe["ttft_p50_ms"] <= probe["stream_p50_ms"]


def _row(p50_ms: float, rps: float, cpu: float, ttft: float) -> dict:
    c1 = {"p50_us": p50_ms * 1e3, "p99_us": p50_ms * 2e3, "rps": 1e3 / p50_ms}
    c8 = {"p50_us": p50_ms * 8e3, "p99_us": p50_ms * 9e3, "rps": rps, "cpu_ms_per_request": cpu}
    return {"c1": c1, "c8": c8, "stream": {"ttft_p50_ms": ttft, "stream_p50_ms": ttft + 1}}


def test_report_computes_overheads_ratios_and_targets_from_medians():
    samples = {
        "direct": [_row(0.1, 10_000, 0.01, 0.2)] * 3,
        "vanilla-plain": [_row(20.1, 50, 20, 20.2), _row(22.1, 48, 21, 22.2), _row(30.1, 40, 25, 30.2)],
        "vanilla-tuned": [_row(10.1, 100, 10, 10.2)] * 3,
        "ours": [_row(3.1, 300, 3.3, 4.2)] * 3,
        "ours-hooks-off": [_row(2.6, 320, 3.0, 3.7)] * 3,
    }
    summary = report.summarize(samples)
    assert summary["vanilla-plain"]["p50_c1_ms"] == 22.1 and summary["vanilla-plain"]["rounds"] == 3
    over = report.overheads(summary)
    assert over["ours"]["p50_c1_ms"] == 3.0 and over["vanilla-plain"]["p50_c1_ms"] == 22.0
    extra = {name: {"rss_per_worker_mb": 380.0, "startup_s": 7.0} for name in samples}
    rat = report.ratios(summary, over, extra)
    assert rat["ours/vanilla-plain"]["throughput"] == 6.25
    assert rat["ours/vanilla-tuned"]["p50_overhead_c1"] == 0.3
    assert rat["ours/vanilla-tuned"]["cpu_capacity"] == 3.03
    checks = report.targets(summary, rat, [{"chars": 20_000, "us": 3.5}, {"chars": 20_000, "us": 6.0}])
    assert checks["routing decision < 1 ms at 20k chars (ms)"] == {"value": 0.006, "met": True}
    assert checks["hooks add <= 1 ms p50"] == {"value": 0.5, "met": True}
    assert checks["throughput >= 1.5x vanilla-tuned"]["met"] is True
    assert checks["RSS per worker <= vanilla-plain"] == {"value": 1.0, "met": True}
    assert "| ours | 3.1 |" in report.table(summary, over, extra)
