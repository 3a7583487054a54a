"""Expected wait for a local first token, from plain numbers (stdlib only, no I/O).

Ollama serves `slots` requests at once (OLLAMA_NUM_PARALLEL) and queues the rest in arrival
order, sending them nothing (server/sched.go). A new request therefore waits until a slot is
free. The estimate replays that queue from what the gateway knows of every request it has in
flight to Ollama (the new one not included):

    each request: how long ago the gateway sent it (`age`) and how long it should take once it
                  has a slot (`seconds` = its expected answer tokens / the model's tokens per second)
    replay:       in the order they were sent, each starts when it arrives or when the earliest slot
                  is free, whichever is later, and holds that slot for its `seconds`
    wait:         when the earliest slot is free after all of them (0 if one is free now)

A request that should already have ended but is still in flight ends "soon": `OVERDUE_SECONDS`.
So a slot whose answer is nearly done counts as nearly free, which a plain count of requests in
flight cannot see (that counts a queue of one as a whole answer's wait, and spills requests
that would have waited two seconds).

Expected answer tokens: `min(max_tokens, typical answer)` when the client set `max_tokens`
(an upper bound, often far above the real answer), else the typical answer, a moving average of
the model's completion tokens. Speed: a moving average of Ollama's eval_count / eval_duration.
Prompt evaluation and model loading are left out: they are short next to generation on the hosts
this targets (a 7B model on CPU at 10-20 tokens/s per stream).

How it fails: it does not; odd inputs are clamped (slots < 1 counts as 1, a speed <= 0 means
"unknown" and uses `DEFAULT_TOKENS_PER_SECOND`, negative ages count as 0), so the estimate is
always a finite number >= 0.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_TOKENS_PER_SECOND = 12.0  # a 7B model, Q4, on a 12-core CPU, one stream (README "Capacity")
DEFAULT_ANSWER_TOKENS = 300.0  # the middle of the 150-400 tokens of a typical chat answer
SMOOTHING = 0.2  # weight of a new sample in the moving averages
OVERDUE_SECONDS = 1.0  # what is left of an answer that should have ended and has not


@dataclass(frozen=True, slots=True)
class Pending:
    """One request in flight to Ollama, as the gateway sees it."""

    age: float  # seconds since the gateway sent it
    seconds: float  # expected generation time once it has a slot


@dataclass(frozen=True, slots=True)
class LocalLoad:
    pending: tuple[Pending, ...]  # in flight to this Ollama, the new request not included
    slots: int  # OLLAMA_NUM_PARALLEL


def answer_seconds(max_tokens: int | None, answer_tokens: float | None, tokens_per_second: float | None) -> float:
    """Expected generation time of one answer (see the module docstring)."""
    typical = answer_tokens if answer_tokens and answer_tokens > 0 else DEFAULT_ANSWER_TOKENS
    tokens = min(max_tokens, typical) if max_tokens and max_tokens > 0 else typical
    speed = tokens_per_second if tokens_per_second and tokens_per_second > 0 else DEFAULT_TOKENS_PER_SECOND
    return max(tokens, 1.0) / speed


def expected_wait(load: LocalLoad) -> float:
    """Seconds a new request would wait for a runner slot (and so for its first token)."""
    free = [float("-inf")] * max(load.slots, 1)  # when each slot is free, in seconds from now
    for request in sorted(load.pending, key=lambda p: -p.age):  # oldest first: Ollama's queue order
        slot = free.index(min(free))
        start = max(-max(request.age, 0.0), free[slot])
        free[slot] = max(start + max(request.seconds, 0.0), OVERDUE_SECONDS)
    return max(min(free), 0.0)


def moving_average(previous: float | None, sample: float, weight: float = SMOOTHING) -> float:
    """Exponential moving average; the first sample is taken as it is."""
    return sample if previous is None else previous + weight * (sample - previous)


def tokens_per_second(eval_count: object, eval_seconds: object) -> float | None:
    """Generation speed of one answer, or None when the numbers cannot give one (too short to time)."""
    if not isinstance(eval_count, (int, float)) or not isinstance(eval_seconds, (int, float)):
        return None
    if eval_count < 2 or eval_seconds <= 0.01:
        return None
    return float(eval_count) / float(eval_seconds)
