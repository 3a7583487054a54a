"""Expected wait for a local first token, from plain numbers (stdlib only, no I/O).

Ollama serves `slots` requests at once (OLLAMA_NUM_PARALLEL) and queues the rest, sending them
nothing (server/sched.go). A new request therefore waits until enough running answers finish:

    ahead        = inflight - slots + 1           (answers that must finish before it gets a slot)
    answer_time  = answer_tokens / tokens_per_second
    wait         = 0                              when ahead <= 0 (a slot is free)
                 = ahead * answer_time / slots    otherwise

`inflight` counts the requests this gateway has sent to that Ollama and not yet finished (running
and queued, not counting the new one), `tokens_per_second` is the measured generation speed of
one stream of that model (a moving average of Ollama's eval_count / eval_duration), and
`answer_tokens` the typical answer length (a moving average of completion tokens). The slots
finish answers at `slots / answer_time` per second on average, hence the division. Prompt
evaluation and model loading are left out: they are short next to generation on the hosts
this targets (a 7B model on CPU at 10-20 tokens/s per stream).

How it fails: it does not; odd inputs are clamped (slots < 1 counts as 1, a speed <= 0 means
"unknown" and uses `DEFAULT_TOKENS_PER_SECOND`), so the estimate is always a finite number >= 0.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_TOKENS_PER_SECOND = 12.0  # a 7B model, Q4, on a 12-core CPU, one stream (README "Capacity")
DEFAULT_ANSWER_TOKENS = 300.0  # the middle of the 150-400 tokens of a typical chat answer
SMOOTHING = 0.2  # weight of a new sample in the moving averages


@dataclass(frozen=True, slots=True)
class LocalLoad:
    inflight: int  # requests sent to this Ollama and not finished, the new one not included
    slots: int  # OLLAMA_NUM_PARALLEL
    tokens_per_second: float = DEFAULT_TOKENS_PER_SECOND  # one stream, measured
    answer_tokens: float = DEFAULT_ANSWER_TOKENS  # typical completion length, measured


def expected_wait(load: LocalLoad) -> float:
    """Seconds a new request would wait for a runner slot (and so for its first token)."""
    slots = max(load.slots, 1)
    ahead = load.inflight - slots + 1
    if ahead <= 0:
        return 0.0
    speed = load.tokens_per_second if load.tokens_per_second > 0 else DEFAULT_TOKENS_PER_SECOND
    answer_time = max(load.answer_tokens, 1.0) / speed
    return ahead * answer_time / slots


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
