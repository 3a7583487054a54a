"""The gateway's Prometheus metrics and the `GET /metrics` handler.

Multiprocess mode: `gateway serve` points PROMETHEUS_MULTIPROC_DIR at a fresh directory
before uvicorn starts its workers, each worker writes its samples there, and /metrics sums
all workers (gauges: the most recent value of a live worker). Import this module only after
that variable is set; without it (unit tests, a bare `uvicorn gateway.app:app`) the
metrics are per process. Observing a metric never raises into a request.
"""

from __future__ import annotations

import asyncio
import logging
import os

from prometheus_client import (CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Gauge, Histogram,
                               generate_latest, multiprocess)

from custom_router.policy import fallback_tiers

log = logging.getLogger("gateway.metrics")

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

REQUESTS = Counter("gateway_requests_total", "Inference requests by final route, reason, served model and HTTP status.",
                   ["route", "reason", "model", "status"])
FALLBACKS = Counter("gateway_fallbacks_total", "Requests retried on the other tier, by cause of the first failure.",
                    ["from_tier", "to_tier", "cause"])
TOKENS = Counter("gateway_tokens_total", "Tokens by final route and kind (prompt, completion, reasoning).",
                 ["route", "kind"])
COST = Counter("gateway_cost_usd_total", "Cost in USD at config.yaml prices (plus local_cost_per_1k_tokens).",
               ["route"])
SAVED = Counter("gateway_saved_usd_total", "USD saved against sending the same tokens to the cloud default model.")
DURATION = Histogram("gateway_request_duration_seconds", "Request latency until the last byte.", ["route"],
                     buckets=LATENCY_BUCKETS)
TTFT = Histogram("gateway_time_to_first_token_seconds", "Streams: time until the first streamed chunk.", ["route"],
                 buckets=LATENCY_BUCKETS)
BACKEND_UP = Gauge("gateway_backend_up", "1 when the backend is reachable (ollama: polled; deepseek: last request).",
                   ["backend"], multiprocess_mode="livemostrecent")
CACHE = Counter("gateway_cache_requests_total",
                "Requests that consulted the response cache, by result (hit, miss, bypass).", ["result"])
LOCAL_INFLIGHT = Gauge("gateway_local_inflight", "Requests in flight to the local backend (running and queued in "
                       "Ollama), as counted at the last routing decision.", ["backend"],
                       multiprocess_mode="livemostrecent")
LOCAL_TPS = Gauge("gateway_local_tokens_per_second", "Measured generation speed of one local stream (moving average).",
                  ["model"], multiprocess_mode="livemostrecent")
LOCAL_WAIT = Gauge("gateway_local_wait_estimate_seconds", "Expected wait for a local first token of the local default "
                   "model, at the last routing decision.", multiprocess_mode="livemostrecent")
SPILLS = Counter("gateway_spills_total", "Local or auto requests sent to the cloud, by reason (local-busy, complexity, "
                 "local-unavailable, ...).", ["reason"])
LEDGER_ERRORS = Counter("gateway_ledger_errors_total", "Ledger records that could not be written, by kind.", ["kind"])
SHIM_APPLIED = Gauge("gateway_litellm_shim_applied", "1 when the LiteLLM shim (litellm_compat.shims) applied in this "
                     "worker, 0 when it was skipped; the startup log says why.", ["shim"], multiprocess_mode="livemin")
TRUNCATED = Counter("gateway_truncated_prompts_total", "Local answers whose prompt Ollama evaluated only in part "
                    "(prompt_eval_count far below the prompt sent), by model.", ["model"])


def observe(record) -> None:
    """Count one finished request (a hooks.ledger.Record)."""
    try:
        route = record.route
        REQUESTS.labels(route, record.reason, record.served_model or "none", str(record.status)).inc()
        if record.fallback_cause:
            FALLBACKS.labels(*fallback_tiers(route, record.reason), record.fallback_cause).inc()
        for kind, value in (("prompt", record.prompt_tokens), ("completion", record.completion_tokens),
                            ("reasoning", record.reasoning_tokens)):
            if value:
                TOKENS.labels(route, kind).inc(value)
        if record.cost_usd > 0:
            COST.labels(route).inc(record.cost_usd)
        if record.saved_usd > 0:  # a counter cannot go down: negative savings live in the ledger only
            SAVED.inc(record.saved_usd)
        if record.cache:
            CACHE.labels(record.cache).inc()
        DURATION.labels(route).observe(record.latency_ms / 1000)
        if record.ttft_ms is not None:
            TTFT.labels(route).observe(record.ttft_ms / 1000)
    except Exception:
        log.exception("could not update request metrics")


def set_backend_up(backend: str, up: bool) -> None:
    BACKEND_UP.labels(backend).set(1 if up else 0)


def truncated_prompt(model: str) -> None:
    TRUNCATED.labels(model).inc()


def litellm_shims(outcomes) -> None:
    """Publish what litellm_compat.shims.apply / after_startup reported (litellm_compat.shims.Outcome)."""
    for outcome in outcomes:
        SHIM_APPLIED.labels(outcome.name).set(1 if outcome.applied else 0)


def ledger_error(kind: str, records: int = 1) -> None:
    LEDGER_ERRORS.labels(kind).inc(records)


def render() -> bytes:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


async def endpoint(scope, receive, send) -> None:
    """ASGI handler for GET /metrics (reads the sample files off the event loop)."""
    body = await asyncio.to_thread(render)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", CONTENT_TYPE_LATEST.encode()),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body if scope["method"] == "GET" else b""})
