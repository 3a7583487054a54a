"""`python -m bench.team_model`: the team workload of `python -m bench team` as a queueing model.

The real benchmark runs 40-160 requests per team size through real processes, so one run's p95
moves by tens of percent, and it cannot say whether a target is out of reach or only missed.
This model replays the same arrivals (bench.team.arrivals: Poisson, 70% simple, answers of
150-400 tokens) through 2 FIFO runner slots, for many seeds, with the gateway's own estimator
(custom_router.load) deciding each spill, and prints what each spill threshold buys:
the TTFT p95 against local-first's, the local share, and the cloud cost against cloud-only's.

Simplifications (why it is a model, not the benchmark): the estimator sees the true answer
lengths bounded by the typical answer (as the gateway does with max_tokens), prompt evaluation
takes a fixed 0.2 s, the cloud's first token takes 1 s, and no process or network is involved.
The real benchmark checks these numbers against real processes.

How it fails: it does not; it is arithmetic on seeded random numbers.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from bench.team import COMPLEX, SIMPLE, SLOTS, TOKENS_PER_SECOND, arrivals
from custom_router.load import LocalLoad, Pending, answer_seconds, expected_wait

PROMPT_SECONDS = 0.2  # a short prompt read at ~100 tokens/s
CLOUD_TTFT = 1.0  # DeepSeek's first token, seconds
TYPICAL_ANSWER = 275.0  # the middle of 150-400: what the gateway's moving average settles at
PRICES = (0.28e-6, 0.42e-6)  # config.yaml's deepseek-chat, USD per input / output token


@dataclass(frozen=True)
class Outcome:
    ttft_p95: float
    local_share: float
    cost_share: float  # cloud cost / cloud-only cost


def simulate(users: int, requests: int, seed: int, threshold: float | None, tps: float = TOKENS_PER_SECOND,
             slots: int = SLOTS) -> Outcome:
    """One team run. threshold None: local-first (never spill); else spill when the estimate exceeds it."""
    free = [0.0] * slots  # when each runner slot is free (FIFO: the earliest free slot takes the next)
    inflight: list[tuple[float, float, float]] = []  # (sent at, expected seconds, ends at)
    ttfts, local, cost, cloud_only = [], 0, 0.0, 0.0
    for arrival in arrivals(users, requests, seed):
        now = arrival.at
        price = len(COMPLEX if arrival.complex else SIMPLE) // 4 * PRICES[0] + arrival.answer_tokens * PRICES[1]
        cloud_only += price
        inflight = [r for r in inflight if r[2] > now]
        go_local = not arrival.complex
        if go_local and threshold is not None:
            load = LocalLoad(tuple(Pending(now - sent, seconds) for sent, seconds, _ in inflight), slots)
            go_local = expected_wait(load) <= threshold
        if not go_local:
            ttfts.append(CLOUD_TTFT)
            cost += price
            continue
        slot = free.index(min(free))
        start = max(now, free[slot])
        free[slot] = start + PROMPT_SECONDS + arrival.answer_tokens / tps
        inflight.append((now, answer_seconds(arrival.answer_tokens, TYPICAL_ANSWER, tps), free[slot]))
        ttfts.append(start - now + PROMPT_SECONDS)
        local += 1
    p95 = statistics.quantiles(ttfts, n=100, method="inclusive")[94]
    return Outcome(p95, local / requests, cost / cloud_only)


def frontier(users: int = 8, requests: int = 80, seeds: int = 30, speeds: tuple[float, ...] = (12.0, 15.0, 20.0),
             thresholds: tuple[float, ...] = (3.0, 5.0, 8.0, 10.0, 15.0)) -> list[dict]:
    """Mean outcomes over seeds, per token rate and threshold, with local-first as the reference."""
    rows = []
    for tps in speeds:
        def mean(threshold: float | None) -> Outcome:
            runs = [simulate(users, requests, seed, threshold, tps) for seed in range(1, seeds + 1)]
            return Outcome(*(statistics.mean(getattr(r, f) for r in runs) for f in ("ttft_p95", "local_share", "cost_share")))

        first = mean(None)
        capacity = slots_per_minute(tps) / (users * 0.7)  # share of simple requests 2 slots can finish
        rows.append({"tps": tps, "threshold": None, **vars(first), "ratio": 1.0, "capacity": capacity})
        for threshold in thresholds:
            ours = mean(threshold)
            rows.append({"tps": tps, "threshold": threshold, **vars(ours), "ratio": ours.ttft_p95 / first.ttft_p95,
                         "capacity": capacity})
    return rows


def slots_per_minute(tps: float, slots: int = SLOTS) -> float:
    """Answers 2 slots finish per minute at `tps` per stream, for the typical 275-token answer."""
    return slots * 60.0 / (PROMPT_SECONDS + TYPICAL_ANSWER / tps)


def markdown(rows: list[dict]) -> str:
    lines = ["| tokens/s | threshold s | TTFT p95 s | vs local-first | local req % | cloud cost vs cloud-only | "
             "simple requests 2 slots can finish |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        name = "local-first" if r["threshold"] is None else f"{r['threshold']:g}"
        lines.append(f"| {r['tps']:g} | {name} | {r['ttft_p95']:.1f} | {r['ratio']:.2f} | {100 * r['local_share']:.0f} | "
                     f"{r['cost_share']:.2f} | {100 * min(r['capacity'], 1):.0f}% |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown(frontier()))
