"""The soak's client side: the request mix, one request sent and classified, and the tally.

Every request ends in exactly one outcome (`Outcome.kind`):
- `served`: a completion (non-streaming: 200 with message content; streaming: content
  chunks, then `data: [DONE]`, and no error event);
- `error`: a well-formed OpenAI error, `{"error": {"message","type","param","code"}}` with the
  type matching the status and no stack trace; for a stream that had started, a final
  error event and no `[DONE]`;
- `lost`: anything else (a connection that broke, a stream that stopped without `[DONE]` or
  an error event, an error body that is not OpenAI-shaped or carries a trace);
- `hung`: no complete answer within the client's per-request bound.
The soak passes only with zero lost and zero hung. Pure apart from `send`.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

from gateway.errors import STATUS_TYPES, error_type

MODELS = {"auto": 4, "qwen2.5:7b": 2, "llama3.2:3b": 1, "deepseek-chat": 2, "deepseek-reasoner": 1}
SHORT = [{"role": "user", "content": "Say hello."}]
LONG = [{"role": "system", "content": "You summarise logs."},
        {"role": "user", "content": "Summarise this log:\n" + "\n".join(f"line {i}: worker {i % 7} ok in {i * 13 % 97} ms"
                                                                          for i in range(80))}]
TRACE_MARKERS = ("Traceback", 'File "/', "site-packages")


@dataclass(frozen=True)
class Spec:
    model: str
    stream: bool
    long: bool
    key: str  # the name of the key in the soak's key table, not the key
    max_tokens: int | None = None

    def body(self) -> dict:
        body = {"model": self.model, "messages": LONG if self.long else SHORT, "stream": self.stream}
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        return body


def pick(rng: random.Random, keys: dict[str, int]) -> Spec:
    """A random request: model, streaming or not, short or long prompt, which key (weights given)."""
    return Spec(model=rng.choices(list(MODELS), weights=list(MODELS.values()))[0], stream=rng.random() < 0.5,
                long=rng.random() < 0.3, key=rng.choices(list(keys), weights=list(keys.values()))[0],
                max_tokens=rng.choice((None, None, None, 4, 64)))


@dataclass(frozen=True)
class Outcome:
    kind: str  # served | error | lost | hung
    detail: str  # served: route; error: "<status> <code or type>"; lost/hung: what went wrong
    message: str  # error: the error's message
    status: int | None
    request_id: str | None
    reason: str | None
    elapsed: float
    spec: Spec


def openai_error(body: object, status: int | None) -> dict | None:
    """The error object of a well-formed OpenAI error body for `status` (None: a stream's error
    event, which has no status of its own), else None."""
    if not isinstance(body, dict) or set(body) != {"error"} or not isinstance(body["error"], dict):
        return None
    error = body["error"]
    if set(error) != {"message", "type", "param", "code"} or not isinstance(error["message"], str) or not error["message"].strip():
        return None
    expected = {error_type(status)} if status else set(STATUS_TYPES.values())
    if error["type"] not in expected or any(marker in error["message"] for marker in TRACE_MARKERS):
        return None
    return error


def classify_json(status: int, raw: bytes) -> tuple[str, str, str]:
    """(kind, detail, error message) of a non-SSE response."""
    try:
        body = json.loads(raw)
    except ValueError:
        return "lost", f"{status} body is not JSON: {raw[:120]!r}", ""
    if status == 200:
        try:
            content = body["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            return "lost", f"200 without a message: {raw[:120]!r}", ""
        return ("served", "", "") if isinstance(content, str) and content else ("lost", "200 with empty content", "")
    error = openai_error(body, status)
    if error is None:
        return "lost", f"{status} malformed error: {raw[:200]!r}", ""
    return "error", f"{status} {error['code'] or error['type']}", error["message"]


def classify_stream(events: list[str]) -> tuple[str, str, str]:
    """(kind, detail, error message) from the `data:` payloads of a 200 SSE response, in order."""
    if not events:
        return "lost", "stream without events", ""
    last = events[-1]
    if last == "[DONE]":
        try:
            chunks = [json.loads(e) for e in events[:-1]]
        except ValueError:
            return "lost", "an event is not JSON", ""
        if any("error" in c for c in chunks):
            return "lost", "error event followed by [DONE]", ""
        text = "".join((ch.get("delta") or {}).get("content") or "" for c in chunks for ch in c.get("choices", []))
        return ("served", "", "") if text else ("lost", "[DONE] without content", "")
    if "[DONE]" in events:
        return "lost", "events after [DONE]", ""
    try:
        error = openai_error(json.loads(last), None)
    except ValueError:
        error = None
    if error is None:
        return "lost", f"stream ended without [DONE] or an error event: {last[:200]}", ""
    return "error", f"stream {error['code'] or error['type']}", error["message"]


async def send(client: httpx.AsyncClient, url: str, secret: str, spec: Spec, bound: float) -> Outcome:
    """Send one request; `bound` seconds is the per-request must-not-hang limit."""
    start = time.monotonic()
    meta: dict = {}

    async def exchange() -> tuple[str, str, str]:
        async with client.stream("POST", f"{url}/v1/chat/completions", json=spec.body(),
                                 headers={"Authorization": f"Bearer {secret}"}) as response:
            meta.update(status=response.status_code, request_id=response.headers.get("x-request-id"),
                        reason=response.headers.get("x-gateway-reason"), route=response.headers.get("x-gateway-route"))
            if response.status_code == 200 and response.headers.get("content-type", "").startswith("text/event-stream"):
                events = [line[6:] async for line in response.aiter_lines() if line.startswith("data: ")]
                return classify_stream(events)
            return classify_json(response.status_code, await response.aread())

    try:
        kind, detail, message = await asyncio.wait_for(exchange(), bound)
    except TimeoutError:
        kind, detail, message = "hung", f"no complete answer within {bound} s", ""
    except Exception as exc:  # a broken connection or body, whatever raises it, is a lost request
        kind, detail, message = "lost", f"{type(exc).__name__}: {exc}", ""
    if kind == "served":
        detail = meta.get("route") or "none"
    return Outcome(kind, detail, message, meta.get("status"), meta.get("request_id"), meta.get("reason"),
                   time.monotonic() - start, spec)


@dataclass
class Tally:
    outcomes: list[Outcome] = field(default_factory=list)

    def add(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)

    def count(self, kind: str) -> int:
        return sum(1 for o in self.outcomes if o.kind == kind)

    def figures(self) -> dict:
        served = [o for o in self.outcomes if o.kind == "served"]
        errors = [o for o in self.outcomes if o.kind == "error"]
        latencies = sorted(o.elapsed for o in self.outcomes)
        return {
            "sent": len(self.outcomes),
            "served": len(served),
            "served_by_route": dict(Counter(o.detail for o in served)),
            "served_by_other_tier": sum(1 for o in served if (o.reason or "").endswith("-error-fallback")),
            "served_streams": sum(1 for o in served if o.spec.stream),
            "errors": self.count("error"),
            "errors_by_kind": dict(Counter(o.detail for o in errors).most_common()),
            "error_examples": {o.detail: o.message for o in reversed(errors)},
            "lost": self.count("lost"),
            "hung": self.count("hung"),
            "lost_or_hung_examples": [f"{o.kind}: {o.detail} ({o.spec})" for o in self.outcomes
                                      if o.kind in ("lost", "hung")][:20],
            "latency_s": {"p50": _quantile(latencies, 0.5), "p99": _quantile(latencies, 0.99),
                          "max": latencies[-1] if latencies else 0.0},
        }


def _quantile(values: list[float], q: float) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return round(statistics.quantiles(values, n=100)[min(98, int(q * 100) - 1)], 3)
