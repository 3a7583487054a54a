"""The routing policy (pure functions, no I/O, no LiteLLM import)."""

from custom_router.policy import (
    BackendState,
    Decision,
    ModelEntry,
    Policy,
    Reason,
    RequestFacts,
    Route,
    Tier,
    complexity,
    decide,
    decide_embedding,
    estimate_tokens,
    normalize_tag,
    request_facts,
)

__all__ = [
    "BackendState",
    "Decision",
    "ModelEntry",
    "Policy",
    "Reason",
    "RequestFacts",
    "Route",
    "Tier",
    "complexity",
    "decide",
    "decide_embedding",
    "estimate_tokens",
    "normalize_tag",
    "request_facts",
]
