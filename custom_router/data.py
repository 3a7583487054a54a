"""The plain data the routing policy works on: tiers, routes, reasons, the model catalogue, the
backend state, a request's facts and the decision. Frozen dataclasses and enums, no behaviour
beyond `normalize_tag` and `BackendState.local_ok`; custom_router.policy decides with them.
How it fails: it cannot; it holds values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class Tier(StrEnum):
    LOCAL = "local"
    CLOUD = "cloud"
    AUTO = "auto"


class Route(StrEnum):
    LOCAL = "local"
    CLOUD = "cloud"
    NONE = "none"


class Reason(StrEnum):
    EXPLICIT = "explicit"
    SIMPLE = "simple"
    COMPLEXITY = "complexity"
    CONTEXT_WINDOW = "context-window"
    CLOUD_ONLY = "cloud-only"
    CAPABILITY = "capability"
    LOCAL_UNAVAILABLE = "local-unavailable"
    CLOUD_UNAVAILABLE = "cloud-unavailable"
    LOCAL_ERROR_FALLBACK = "local-error-fallback"
    CLOUD_ERROR_FALLBACK = "cloud-error-fallback"
    NO_BACKEND = "no-backend"
    OUTPUT_LIMIT = "output-limit"
    BUDGET = "budget"
    LOCAL_ONLY = "local-only"
    LOCAL_BUSY = "local-busy"
    EMBEDDING = "embedding"


# What a Route.NONE decision answers, by reason (the hook turns it into an OpenAI-shaped error).
REFUSAL_STATUS = {Reason.CAPABILITY: 400, Reason.OUTPUT_LIMIT: 400, Reason.BUDGET: 429, Reason.LOCAL_ONLY: 503,
                  Reason.NO_BACKEND: 503}
CAPABILITIES = ("tools", "json_schema", "vision", "thinking", "tool_choice")
# Kinds a model must support to serve a request; `tool_choice` is a forced tool call (`required`, a named
# function, Anthropic's `any`/`tool`), which Ollama cannot enforce (LiteLLM drops tool_choice for it).
REQUEST_NEEDS = frozenset({"tools", "json_schema", "vision", "tool_choice"})


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """One model group of config.yaml as the policy sees it."""

    name: str
    tier: Tier
    backend_model: str = ""  # the Ollama tag for local models
    context_window: int = 8192
    fallback: str | None = None  # overrides the other tier's default
    capabilities: frozenset[str] = frozenset(CAPABILITIES)
    max_output_tokens: int | None = None
    mode: str = "chat"  # LiteLLM's model_info.mode: "chat" or "embedding"


@dataclass(frozen=True, slots=True)
class Policy:
    models: Mapping[str, ModelEntry]
    local_default: str
    cloud_default: str
    complexity_threshold: int = 500
    complexity_unit: str = "chars"  # or "tokens"
    chars_per_token: float = 4.0
    output_reserve_tokens: int = 256
    cloud_only_kinds: frozenset[str] = frozenset()
    bytes_per_token: float = 3.5  # context planning: UTF-8 bytes per token, on the safe side of real tokenizers
    local_max_wait_seconds: float = 0.0  # spill `auto` to the cloud when the local wait is longer (0: never)
    spill_named_local: bool = False  # spill requests that name a local model too


@dataclass(frozen=True, slots=True)
class BackendState:
    """What the gateway currently believes about its backends (kept fresh by hooks.backends)."""

    ollama_up: bool = True
    installed: frozenset[str] = frozenset()
    local_problem: str | None = None
    cloud_ready: bool = True
    cloud_problem: str | None = None
    local_wait: Mapping[str, float] = field(default_factory=dict)  # expected seconds to first token, per local group

    def local_ok(self, entry: ModelEntry) -> bool:
        return self.ollama_up and normalize_tag(entry.backend_model) in self.installed


@dataclass(frozen=True, slots=True)
class RequestFacts:
    model: str
    chars: int
    messages: int
    max_tokens: int | None = None
    max_tokens_param: str = "max_tokens"  # the field that set it: max_completion_tokens, max_output_tokens (Responses)
    kinds: frozenset[str] = field(default_factory=frozenset)
    prompt_bytes: int = 0  # UTF-8 bytes of all text the model reads: messages, tool schemas, schema
    cloud_denied: Reason | None = None  # BUDGET or LOCAL_ONLY: the cloud may not serve this request


@dataclass(frozen=True, slots=True)
class Decision:
    route: Route
    model: str | None
    reason: Reason
    fallback: str | None = None
    detail: str = ""
    no_fallback: str = ""  # why the other tier cannot take over, when fallback is None for a reason of the request


def normalize_tag(tag: str) -> str:
    """Ollama treats `llama3.2` and `llama3.2:latest` as the same model."""
    return tag if ":" in tag else f"{tag}:latest"
