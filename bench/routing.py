"""Micro-benchmark of the routing decision (custom_router.policy) for prompts of 100 to 200k characters.

It times `decide(request_facts(body), policy, state)` exactly as the routing hook calls it,
with the shipped config.yaml, for two shapes of the same text:
- `one-message`: the whole prompt in one user message;
- `conversation`: the prompt split into 1,000-character messages (cost grows with messages).
Each size reports the best of several repeats (timeit's convention), in microseconds, and the
growth against the smallest size, so a reader sees whether the cost is flat, linear or worse.
"""

from __future__ import annotations

import time
from pathlib import Path

from custom_router.policy import BackendState, decide, request_facts
from proxy_config.catalog import build_policy
from proxy_config.settings import RoutingSettings, read_config

SIZES = (100, 1_000, 10_000, 20_000, 50_000, 100_000, 200_000)
REPO = Path(__file__).resolve().parent.parent


def _body(chars: int, shape: str) -> dict:
    if shape == "one-message":
        messages = [{"role": "user", "content": "x" * chars}]
    else:
        messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": "x" * min(1000, chars - i * 1000)}
                    for i in range(max(1, -(-chars // 1000)))]
    return {"model": "auto", "messages": [{"role": "system", "content": "Be brief."}, *messages], "max_tokens": 64}


def _time_us(fn, number: int, repeat: int) -> float:
    for _ in range(number // 4):  # warm up caches and the branch predictor before timing
        fn()
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter_ns()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter_ns() - started) / number)
    return best / 1e3


def run(sizes: tuple[int, ...] = SIZES, number: int = 2000, repeat: int = 5, config: Path | None = None) -> list[dict]:
    """One row per (shape, size): microseconds per decision, and the route it took."""
    settings = read_config(config or REPO / "config.yaml")
    routing = RoutingSettings.model_validate(settings.get("gateway_settings") or {})
    policy = build_policy(settings, routing)
    installed = frozenset(e.backend_model if ":" in e.backend_model else f"{e.backend_model}:latest"
                          for e in policy.models.values() if e.backend_model)
    state = BackendState(ollama_up=True, installed=installed, cloud_ready=True)
    rows = []
    for shape in ("one-message", "conversation"):
        base = None
        for size in sizes:
            body = _body(size, shape)
            decision = decide(request_facts(body), policy, state)
            us = _time_us(lambda: decide(request_facts(body), policy, state), number, repeat)
            base = base or us
            rows.append({"shape": shape, "chars": size, "messages": len(body["messages"]), "us": round(us, 2),
                         "growth": round(us / base, 2), "route": decision.route.value if decision else None,
                         "reason": decision.reason.value if decision else None})
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| shape | prompt chars | messages | µs per decision | growth vs 100 chars | decision |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['shape']} | {r['chars']:,} | {r['messages']} | {r['us']} | {r['growth']}x | {r['route']} ({r['reason']}) |"
              for r in rows]
    return "\n".join(lines)
