"""The request ledger: one record per inference request, built after the response is sent.

`track(ctx, scope)` returns a `ResponseTracker` that gateway.app feeds with the ASGI
messages it sends (status, route headers, stream chunks). When the last byte has gone out it
schedules `finish`, which waits for LiteLLM's success callback (hooks.usage: tokens, served
model; bounded wait), builds the `Record` with costs from config.yaml prices, updates the
metrics, logs one `request` line and queues the record for the background writer
(hooks.ledger_store). Nothing here runs before the response is complete, and nothing here
raises into a request: failures are logged (and, for writes, counted).

Costs (docs/observability.md): cost = prompt × input price + completion × output price of
the served model group (cached prompt tokens at the cache-read price), plus
`local_cost_per_1k_tokens` for locally served tokens. Saved = what `cloud_default` would
have charged for the same tokens, minus that cost, for locally served requests (0 for cloud).
A response cache hit (hooks.cache) costs 0; what the served group would have cost is its
`cache_saved_usd`. A cloud cost is charged to the key's monthly budget (hooks.spend).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Mapping
from dataclasses import astuple, dataclass, fields

from hooks.context import RequestContext, Usage
from hooks.ledger_store import COLUMNS

log = logging.getLogger("gateway.request")

INFERENCE_SUFFIXES = ("/chat/completions", "/completions", "/embeddings", "/responses", "/messages")
USAGE_WAIT_SECONDS = 15.0  # longest wait for LiteLLM's success callback after the last byte
FAILURE_GRACE_SECONDS = 3.0  # after a backend failure, how long a fallback's success may still come


@dataclass(frozen=True)
class Record:
    request_id: str
    ts: float  # unix time the request arrived
    key_hash: str | None
    requested_model: str | None
    served_model: str | None
    route: str  # local | cloud | none: the tier that served (after a fallback)
    reason: str  # x-gateway-reason, e.g. simple, complexity, local-error-fallback
    fallback_cause: str | None
    prompt_tokens: int
    completion_tokens: int  # includes reasoning tokens
    reasoning_tokens: int
    tokens_counted: bool  # True when the backend sent no usage and the gateway counted
    latency_ms: float
    ttft_ms: float | None  # streams only
    cost_usd: float
    saved_usd: float
    status: int
    error_type: str | None
    stream: bool
    cache: str | None = None  # hit | miss | bypass (hooks.cache); None when the cache was not used
    cache_saved_usd: float = 0.0  # a hit: what the served model group would have cost (docs/costs.md)

    def row(self) -> tuple:
        return astuple(self)


assert tuple(f.name for f in fields(Record)) == COLUMNS, "hooks.ledger_store.COLUMNS must match Record"


@dataclass(frozen=True)
class Price:
    tier: str
    input: float = 0.0
    output: float = 0.0
    cache_read: float | None = None

    def cost(self, usage: Usage) -> float:
        cached = min(usage.cached, usage.prompt)
        read = self.input if self.cache_read is None else self.cache_read
        return (usage.prompt - cached) * self.input + cached * read + usage.completion * self.output


@dataclass(frozen=True)
class Prices:
    models: Mapping[str, Price]
    cloud_default: str
    local_per_1k: float = 0.0

    def costs(self, served_model: str | None, usage: Usage) -> tuple[float, float]:
        """(cost, saved) in USD of one response."""
        price = self.models.get(served_model or "")
        if price is None:
            return 0.0, 0.0
        cost = price.cost(usage)
        if price.tier != "local":
            return cost, 0.0
        cost += self.local_per_1k * (usage.prompt + usage.completion) / 1000
        cloud = self.models.get(self.cloud_default)
        return cost, (cloud.cost(usage) if cloud else 0.0) - cost


def prices_from_config(config: Mapping, cloud_default: str, local_per_1k: float) -> Prices:
    models = {}
    for entry in config.get("model_list") or []:
        info = entry.get("model_info") or {}
        models[entry["model_name"]] = Price(
            tier=str(info.get("gateway_tier", "cloud")),
            input=float(info.get("input_cost_per_token") or 0),
            output=float(info.get("output_cost_per_token") or 0),
            cache_read=None
            if info.get("cache_read_input_token_cost") is None
            else float(info["cache_read_input_token_cost"]),
        )
    return Prices(models, cloud_default, local_per_1k)


def is_inference(path: str) -> bool:
    return path.rstrip("/").endswith(INFERENCE_SUFFIXES)


@dataclass
class ResponseFacts:
    status: int = 0
    route: str = "none"
    reason: str = "not-routed"
    stream: bool = False
    served_model: str | None = None  # from LiteLLM's x-litellm-model-id header
    first_chunk: float | None = None  # perf_counter of the first streamed chunk
    finished: float | None = None
    stream_error: bool = False  # a 200 stream that carried an error event (gateway.errors)


def build_record(ctx: RequestContext, facts: ResponseFacts, prices: Prices, now: float | None = None) -> Record:
    """Pure: the ledger record of one finished request."""
    now = time.perf_counter() if now is None else now
    end = facts.finished or now
    ok = 200 <= facts.status < 400
    usage = ctx.usage or Usage()
    served = ctx.served_model or (facts.served_model if ok else None)
    cost, saved = prices.costs(served, usage)
    cache_saved = 0.0
    if ctx.cache == "hit" and ok:  # nothing was paid; local savings stay what the tier saves against the cloud
        cost, cache_saved = 0.0, cost
    if not ok:
        error_type = "no-backend" if facts.reason == "no-backend" else ctx.error_type or _status_error(facts.status)
    else:  # the status was sent before the stream broke: the error is in the record, not the status
        error_type = (ctx.error_type or "stream-error") if facts.stream_error else None
    return Record(
        request_id=ctx.request_id, ts=time.time() - (now - ctx.started), key_hash=ctx.key_hash,
        requested_model=ctx.requested_model, served_model=served, route=facts.route, reason=facts.reason,
        fallback_cause=ctx.fallback_cause, prompt_tokens=usage.prompt, completion_tokens=usage.completion,
        reasoning_tokens=usage.reasoning, tokens_counted=usage.counted, latency_ms=(end - ctx.started) * 1000,
        ttft_ms=(facts.first_chunk - ctx.started) * 1000 if facts.stream and facts.first_chunk else None,
        cost_usd=cost, saved_usd=saved, status=facts.status, error_type=error_type, stream=facts.stream,
        cache=ctx.cache, cache_saved_usd=cache_saved,
    )


def _status_error(status: int) -> str:
    return {
        400: "bad-request",
        401: "auth",
        403: "forbidden",
        404: "not-found",
        413: "too-large",
        422: "bad-request",
        429: "rate-limit",
        499: "client-closed",
    }.get(status, "server-error" if status >= 500 else "error")


class ResponseTracker:
    """Watches the messages of one response; schedules `finish` after the last byte."""

    def __init__(self, ctx: RequestContext) -> None:
        self.ctx = ctx
        self.facts = ResponseFacts()
        self.done = False

    def sent(self, message: Mapping) -> None:
        if message["type"] == "http.response.start":
            self._start(message)
        elif message["type"] == "http.response.body":
            body = message.get("body", b"")
            if self.facts.stream and self.facts.first_chunk is None and body.strip() and not body.startswith(b":"):
                self.facts.first_chunk = time.perf_counter()  # SSE comments (keep-alives) are not tokens
            if self.facts.stream and b'data: {"error"' in body:
                self.facts.stream_error = True
            if not message.get("more_body", False):
                self._finish()

    def client_gone(self) -> None:
        """The client disconnected before the response was complete: 499, as nginx logs it."""
        if not self.done:
            self.facts.status = 499
            decision = self.ctx.decision
            if self.facts.route == "none" and decision is not None:  # no headers were sent: the planned route
                self.facts.route, self.facts.reason = decision.route.value, decision.reason.value

    def close(self) -> None:
        """The app returned or raised: record what was sent (499 when the client went away mid-response)."""
        if not self.done:
            if self.facts.status == 0:
                self.facts.status = 500
            elif 200 <= self.facts.status < 400:
                self.facts.status = 499
            self._finish()

    def _start(self, message: Mapping) -> None:
        from hooks.runtime import deployment_of

        self.facts.status = int(message["status"])
        headers = dict(message.get("headers", []))
        self.facts.route = headers.get(b"x-gateway-route", b"none").decode()
        self.facts.reason = headers.get(b"x-gateway-reason", b"not-routed").decode()
        self.facts.stream = headers.get(b"content-type", b"").startswith(b"text/event-stream")
        served = deployment_of(headers.get(b"x-litellm-model-id", b"").decode() or None)
        self.facts.served_model = served[0] if served else None

    def _finish(self) -> None:
        self.done = True
        self.facts.finished = time.perf_counter()
        task = asyncio.get_running_loop().create_task(finish(self.ctx, self.facts))
        _pending.add(task)
        task.add_done_callback(_pending.discard)


def track(ctx: RequestContext, scope: Mapping) -> ResponseTracker | None:
    """The key comes from the request's one identity (`ctx.key_hash`: gateway.gate, then
    hooks.auth once LiteLLM has authenticated it), never from the headers again."""
    if not is_inference(scope.get("path", "")):
        return None
    return ResponseTracker(ctx)


_pending: set[asyncio.Task] = set()


async def wait_for_usage(
    ctx: RequestContext, timeout: float = USAGE_WAIT_SECONDS, grace: float = FAILURE_GRACE_SECONDS
) -> None:
    """Until LiteLLM's success callback has run; after a backend failure only `grace` more."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while ctx.usage is None:
        limit = deadline - loop.time()
        if ctx.backend_failures:
            limit = min(limit, grace)
        if limit <= 0:
            return
        ctx.logged.clear()
        try:
            await asyncio.wait_for(ctx.logged.wait(), limit)
        except TimeoutError:
            if ctx.backend_failures or loop.time() >= deadline:
                return


async def finish(ctx: RequestContext, facts: ResponseFacts) -> None:
    from hooks import metrics, spend
    from hooks.ratelimit import get_limiter

    try:
        if 200 <= facts.status < 400:
            await wait_for_usage(ctx)
        record = build_record(ctx, facts, get_prices())
        metrics.observe(record)
        log.info("request", extra={"request_id": record.request_id, **_log_fields(record)})
        get_writer().put(record.row())
        await spend.charge_record(get_limiter(), ctx, record)
    except Exception:
        log.exception("could not record request %s", ctx.request_id)


def _log_fields(record: Record) -> dict:
    keep = ("requested_model", "served_model", "route", "reason", "fallback_cause", "status", "error_type",
            "prompt_tokens", "completion_tokens", "latency_ms", "ttft_ms", "cost_usd", "saved_usd", "key_hash", "cache")
    return {k: getattr(record, k) for k in keep}


@functools.cache
def get_prices() -> Prices:
    from hooks.runtime import get_runtime
    from proxy_config.settings import read_config

    settings = get_runtime().settings
    return prices_from_config(read_config(settings.config_path), settings.routing.cloud_default,
                              settings.routing.local_cost_per_1k_tokens)


@functools.cache
def get_writer():
    from hooks import metrics
    from hooks.ledger_store import LedgerWriter, open_store
    from hooks.runtime import get_runtime

    return LedgerWriter(open_store(get_runtime().settings), on_error=metrics.ledger_error)


async def shutdown(timeout: float = 5.0) -> None:
    """Let pending records settle, then flush the writer (lifespan shutdown)."""
    if _pending:
        await asyncio.wait(set(_pending), timeout=timeout)
    if get_writer.cache_info().currsize:
        await asyncio.to_thread(get_writer().close, timeout)
