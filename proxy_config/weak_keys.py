"""Refuse known, short or low-entropy secrets (master key, Redis and PostgreSQL passwords).

One home for the rule, used twice:
- `gateway check` (proxy_config.check) refuses a weak LITELLM_MASTER_KEY unless `--allow-weak-keys`;
- the Ansible roles refuse weak vault values through the `weak_secret_reason` filter
  (ansible/filter_plugins/gateway_secrets.py loads this file by path; it imports only the stdlib).

A secret is weak when it is a value published in this repository (the example inventory, docs),
contains a placeholder marker (CHANGE-ME, changeme, example, ...), is shorter than 32 characters,
has a short period (`abcabc...`), a run of 8 consecutive characters (`01234567`, `abcdefgh`), or
less than 3 bits of Shannon entropy per character (`aaaa...`, `abababab...`). A value from
`openssl rand -hex 32` passes; `openssl rand -hex 16` (32 characters) passes almost always.

How it fails: `weak_reason` returns a sentence saying why and how to generate a good value, or
None; it never raises and never echoes the secret itself.
"""

from __future__ import annotations

import math
from collections import Counter

MIN_LENGTH = 32
MIN_BITS_PER_CHAR = 3.0
MAX_RUN = 8
GENERATE = "generate one with: echo \"sk-$(openssl rand -hex 32)\" (passwords: openssl rand -hex 32)"

# Values published in this repository (ansible/inventory/example, docs, tests' fixtures of old).
KNOWN_VALUES = frozenset(v.lower() for v in (
    "sk-CHANGE-ME-generate-with-openssl-rand-hex-32",
    "CHANGE-ME-generate-with-openssl-rand-hex-24",
    "CHANGE-ME-generate-with-openssl-rand-hex-32",
    "sk-converge-0123456789abcdef0123456789abcdef",
    "converge-redis-password-0123456789",
    "sk-1234", "sk-master-key", "sk-test",
))
PLACEHOLDER_MARKERS = ("change-me", "changeme", "change_me", "example", "placeholder", "replace-me", "your-key",
                       "xxxxxxxx")


def _shortest_period(value: str) -> int:
    for period in range(1, len(value) // 2 + 1):
        if len(value) % period == 0 and value == value[:period] * (len(value) // period):
            return period
    return len(value)


def _longest_run(value: str) -> int:
    """Longest run of consecutive code points, ascending or descending (`0123`, `dcba`)."""
    best = run = 1
    step = 0
    for a, b in zip(value, value[1:]):
        delta = ord(b) - ord(a)
        if delta in (1, -1) and (run == 1 or delta == step):
            run, step = run + 1, delta
        else:
            run, step = (2, delta) if delta in (1, -1) else (1, 0)
        best = max(best, run)
    return best if value else 0


def bits_per_char(value: str) -> float:
    counts = Counter(value)
    return -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values()) if value else 0.0


def weak_reason(value: str | None, what: str = "the secret") -> str | None:
    """Why `value` is not an acceptable secret (a sentence naming `what`), or None when it is."""
    value = value or ""
    lowered = value.lower()
    if not value:
        return f"{what} is empty; {GENERATE}"
    if lowered in KNOWN_VALUES:
        return f"{what} is a value published in this repository's examples; {GENERATE}"
    if any(marker in lowered for marker in PLACEHOLDER_MARKERS):
        return f"{what} is still a placeholder; {GENERATE}"
    if len(value) < MIN_LENGTH:
        return f"{what} has {len(value)} characters, fewer than {MIN_LENGTH}; {GENERATE}"
    if _shortest_period(value) < len(value):
        return f"{what} repeats a short pattern; {GENERATE}"
    if _longest_run(value) >= MAX_RUN:
        return f"{what} contains a run of {MAX_RUN} or more consecutive characters (like 01234567); {GENERATE}"
    if bits_per_char(value) < MIN_BITS_PER_CHAR:
        return (f"{what} has too little entropy ({bits_per_char(value):.1f} bits per character, "
                f"under {MIN_BITS_PER_CHAR}); {GENERATE}")
    return None
