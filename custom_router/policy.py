"""The routing policy: pure functions from a request, the policy and the backend state to a decision.

Nothing here does I/O or imports LiteLLM, so every rule is testable with plain data.
Order of the rules (see README "Routing"):
  a. a cloud model asked for by name goes to the cloud;
  b. a local or `auto` request goes to the cloud when it is complex (cloud-only kind,
     over the complexity threshold, or too big for the local context window);
  c. it goes to the cloud when its local model is not installed or Ollama is down;
  d. otherwise it stays local.
A tier that is unavailable is never chosen while the other one can serve; when neither
can, the decision is `Route.NONE` and the caller answers 503 with both causes.
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
    LOCAL_UNAVAILABLE = "local-unavailable"
    CLOUD_UNAVAILABLE = "cloud-unavailable"
    LOCAL_ERROR_FALLBACK = "local-error-fallback"
    CLOUD_ERROR_FALLBACK = "cloud-error-fallback"
    NO_BACKEND = "no-backend"


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """One model group of config.yaml as the policy sees it."""

    name: str
    tier: Tier
    backend_model: str = ""  # the Ollama tag for local models
    context_window: int = 8192
    fallback: str | None = None  # overrides the other tier's default


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


@dataclass(frozen=True, slots=True)
class BackendState:
    """What the gateway currently believes about its backends (kept fresh by hooks.backends)."""

    ollama_up: bool = True
    installed: frozenset[str] = frozenset()
    local_problem: str | None = None
    cloud_ready: bool = True
    cloud_problem: str | None = None

    def local_ok(self, entry: ModelEntry) -> bool:
        return self.ollama_up and normalize_tag(entry.backend_model) in self.installed


@dataclass(frozen=True, slots=True)
class RequestFacts:
    model: str
    chars: int
    messages: int
    max_tokens: int | None = None
    kinds: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True)
class Decision:
    route: Route
    model: str | None
    reason: Reason
    fallback: str | None = None
    detail: str = ""


def normalize_tag(tag: str) -> str:
    """Ollama treats `llama3.2` and `llama3.2:latest` as the same model."""
    return tag if ":" in tag else f"{tag}:latest"


def _text_length(content: object) -> tuple[int, bool]:
    """Characters of text in a message's content, and whether it carries an image."""
    if isinstance(content, str):
        return len(content), False
    if not isinstance(content, list):
        return 0, False
    chars, image = 0, False
    for part in content:
        if isinstance(part, dict):
            text = part.get("text")
            if isinstance(text, str):
                chars += len(text)
            image = image or part.get("type") == "image_url"
    return chars, image


def request_facts(body: Mapping[str, object]) -> RequestFacts:
    """Measure a chat request: O(number of messages), no tokenizer."""
    messages = body.get("messages")
    messages = messages if isinstance(messages, list) else []
    chars, kinds = 0, set()
    for message in messages:
        if isinstance(message, dict):
            n, image = _text_length(message.get("content"))
            chars += n
            if image:
                kinds.add("vision")
    if body.get("tools") or body.get("functions"):
        kinds.add("tools")
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        kinds.add("json_schema")
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    return RequestFacts(
        model=str(body.get("model", "")),
        chars=chars,
        messages=len(messages),
        max_tokens=max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else None,
        kinds=frozenset(kinds),
    )


def estimate_tokens(facts: RequestFacts, policy: Policy) -> int:
    return int(facts.chars / policy.chars_per_token) + 4 * facts.messages


def complexity(facts: RequestFacts, policy: Policy, local: ModelEntry) -> tuple[Reason, str] | None:
    """Why this request should leave the local tier, or None when it is simple."""
    kinds = facts.kinds & policy.cloud_only_kinds
    if kinds:
        return Reason.CLOUD_ONLY, f"request uses {', '.join(sorted(kinds))}"
    size = facts.chars if policy.complexity_unit == "chars" else estimate_tokens(facts, policy)
    if size > policy.complexity_threshold:
        unit = policy.complexity_unit
        return Reason.COMPLEXITY, f"{size} {unit} > threshold {policy.complexity_threshold} {unit}"
    needed = estimate_tokens(facts, policy) + (facts.max_tokens or policy.output_reserve_tokens)
    if needed > local.context_window:
        return Reason.CONTEXT_WINDOW, f"~{needed} tokens > {local.name} context {local.context_window}"
    return None


def _unavailable(state: BackendState, local: ModelEntry | None) -> Decision:
    local_cause = state.local_problem or (f"model {local.name} is not installed in Ollama" if local else "no local model")
    cloud_cause = state.cloud_problem or "cloud tier unavailable"
    detail = f"local tier: {local_cause}; cloud tier: {cloud_cause}"
    return Decision(Route.NONE, None, Reason.NO_BACKEND, None, detail)


def decide(facts: RequestFacts, policy: Policy, state: BackendState) -> Decision | None:
    """Pick the route for a request, or None when the model is not one the policy knows."""
    entry = policy.models.get(facts.model)
    if entry is None:
        return None
    if entry.tier is Tier.CLOUD:
        local = policy.models.get(entry.fallback or policy.local_default)
        local_ok = local is not None and state.local_ok(local)
        if state.cloud_ready:
            return Decision(Route.CLOUD, entry.name, Reason.EXPLICIT, local.name if local_ok else None)
        if local_ok:
            return Decision(Route.LOCAL, local.name, Reason.CLOUD_UNAVAILABLE, None, state.cloud_problem or "")
        return _unavailable(state, local)

    local = policy.models[policy.local_default] if entry.tier is Tier.AUTO else entry
    cloud = entry.fallback if entry.tier is Tier.LOCAL and entry.fallback else policy.cloud_default
    local_ok = state.local_ok(local)
    why = complexity(facts, policy, local)
    if why is None and not local_ok:
        why = Reason.LOCAL_UNAVAILABLE, state.local_problem or f"model {local.name} is not installed in Ollama"
    if why is None:
        return Decision(Route.LOCAL, local.name, Reason.SIMPLE, cloud if state.cloud_ready else None)
    if state.cloud_ready:
        return Decision(Route.CLOUD, cloud, why[0], local.name if local_ok else None, why[1])
    if local_ok:
        return Decision(Route.LOCAL, local.name, Reason.CLOUD_UNAVAILABLE, None, f"{why[1]}; {state.cloud_problem}")
    return _unavailable(state, local)
