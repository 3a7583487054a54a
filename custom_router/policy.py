"""The routing policy: pure functions from a request, the policy and the backend state to a decision.

Nothing here does I/O or imports LiteLLM, so every rule is testable with plain data.
Order of the rules (see README "Routing"):
  0. the model must be able to serve the request: a named model that lacks a capability the
     request needs (tools, json_schema, vision) is replaced by a capable model of the same tier
     (`capability`), or the request is refused (400) naming models that can; a named cloud model
     asked for more output tokens than it allows is refused (400) naming its limit (a local model
     has no such limit: Ollama takes any num_predict, and what must fit is the context window);
  a. a cloud model asked for by name goes to the cloud;
  b. a local or `auto` request goes to the cloud when it is complex (cloud-only kind,
     over the complexity threshold, or too big for the local context window);
  c. it goes to the cloud when its local model is not installed or Ollama is down;
  d. an `auto` request (or, with `spill_named_local`, one naming a local model) goes to the cloud
     when the expected wait for a local first token is over `local_max_wait_seconds` (`local-busy`);
  e. otherwise it stays local.
A tier that is unavailable (or denied to this request: budget, local-only) is never chosen while
the other one can serve; when neither can, the decision is `Route.NONE` and the caller answers
with the status of its reason. A fallback target obeys the same rules: it is capable, and a local
fallback fits the request in its context window, so a fallback never ends in a 400 or a silently
truncated prompt.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
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
CAPABILITIES = ("tools", "json_schema", "vision", "thinking")
REQUEST_NEEDS = frozenset({"tools", "json_schema", "vision"})  # kinds a model must support to serve a request


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


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "replace"))


def _text_length(content: object) -> tuple[int, int, bool]:
    """Characters and UTF-8 bytes of text in a message's content, and whether it carries an image."""
    if isinstance(content, str):
        return len(content), _utf8_len(content), False
    if not isinstance(content, list):
        return 0, 0, False
    chars, size, image = 0, 0, False
    for part in content:
        if isinstance(part, dict):
            text = part.get("text")
            if isinstance(text, str):
                chars += len(text)
                size += _utf8_len(text)
            image = image or part.get("type") in ("image_url", "input_image", "image")
    return chars, size, image


def _json_size(value: object) -> int:
    """Rough UTF-8 size of a JSON value (tool schemas, response schemas) without serializing it."""
    if isinstance(value, str):
        return _utf8_len(value) + 2
    if isinstance(value, dict):
        return sum(_json_size(k) + _json_size(v) + 2 for k, v in value.items()) + 2
    if isinstance(value, list):
        return sum(_json_size(v) + 1 for v in value) + 2
    return 6


def request_facts(body: Mapping[str, object]) -> RequestFacts:
    """Measure a chat request: O(size of the messages), no tokenizer."""
    messages = body.get("messages")
    messages = messages if isinstance(messages, list) else []
    chars, size, kinds = 0, 0, set()
    for message in messages:
        if isinstance(message, dict):
            n, b, image = _text_length(message.get("content"))
            chars += n
            size += b
            if image:
                kinds.add("vision")
    tools = body.get("tools") or body.get("functions")
    if tools:
        kinds.add("tools")
        size += _json_size(tools)
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        kinds.add("json_schema")
        size += _json_size(response_format.get("json_schema"))
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    return RequestFacts(
        model=str(body.get("model", "")),
        chars=chars,
        messages=len(messages),
        max_tokens=max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else None,
        kinds=frozenset(kinds),
        prompt_bytes=size,
    )


def estimate_tokens(facts: RequestFacts, policy: Policy) -> int:
    """Tokens for the complexity threshold (in tokens): the configured characters per token."""
    return int(facts.chars / policy.chars_per_token) + 4 * facts.messages


def prompt_tokens(facts: RequestFacts, policy: Policy) -> int:
    """A conservative prompt size for context planning: system prompt, messages and schemas included."""
    return int(max(facts.prompt_bytes, facts.chars) / policy.bytes_per_token) + 8 * facts.messages + 16


def needed_context(facts: RequestFacts, policy: Policy) -> int:
    """Prompt plus the room the answer needs: what `num_ctx` must hold."""
    return prompt_tokens(facts, policy) + (facts.max_tokens or policy.output_reserve_tokens)


def looks_truncated(facts: RequestFacts, evaluated: int, bytes_per_token_max: float = 6.0) -> bool:
    """Ollama's prompt_eval_count far below the prompt sent: it cut the prompt (server/prompt.go drops old
    messages, the runner trims the rest). No tokenizer in use averages more than ~6 UTF-8 bytes per
    token over a prompt, so fewer tokens than bytes/6 means part of it was never read."""
    return 0 < evaluated < max(facts.prompt_bytes, facts.chars) / bytes_per_token_max


def fits(entry: ModelEntry, facts: RequestFacts, policy: Policy) -> bool:
    return needed_context(facts, policy) <= entry.context_window


def can_serve(entry: ModelEntry, facts: RequestFacts) -> bool:
    return (facts.kinds & REQUEST_NEEDS) <= entry.capabilities


def complexity(facts: RequestFacts, policy: Policy, local: ModelEntry) -> tuple[Reason, str] | None:
    """Why this request should leave the local tier, or None when it is simple."""
    kinds = facts.kinds & policy.cloud_only_kinds
    if kinds:
        return Reason.CLOUD_ONLY, f"request uses {', '.join(sorted(kinds))}"
    size = facts.chars if policy.complexity_unit == "chars" else estimate_tokens(facts, policy)
    if size > policy.complexity_threshold:
        unit = policy.complexity_unit
        return Reason.COMPLEXITY, f"{size} {unit} > threshold {policy.complexity_threshold} {unit}"
    if not fits(local, facts, policy):
        needed = needed_context(facts, policy)
        return Reason.CONTEXT_WINDOW, f"~{needed} tokens > {local.name} context {local.context_window}"
    return None


def _tier_models(policy: Policy, tier: Tier, first: str | None) -> Iterator[ModelEntry]:
    """The models of a tier, preferred ones first: `first`, then the tier's default, then config order."""
    default = policy.local_default if tier is Tier.LOCAL else policy.cloud_default
    seen: set[str] = set()
    for name in (first, default, *policy.models):
        entry = policy.models.get(name or "")
        if entry is not None and entry.tier is tier and entry.mode == "chat" and entry.name not in seen:
            seen.add(entry.name)
            yield entry


def _capable(policy: Policy, tier: Tier, first: str | None, facts: RequestFacts) -> ModelEntry | None:
    return next((e for e in _tier_models(policy, tier, first) if can_serve(e, facts)), None)


def _local_fallback(policy: Policy, first: str | None, facts: RequestFacts, state: BackendState) -> ModelEntry | None:
    """A local model that can take over this request: capable, installed, and the request fits its window."""
    for entry in _tier_models(policy, Tier.LOCAL, first):
        if can_serve(entry, facts) and state.local_ok(entry) and fits(entry, facts, policy):
            return entry
    return None


def _refuse_capability(policy: Policy, entry: ModelEntry, facts: RequestFacts) -> Decision:
    missing = sorted((facts.kinds & REQUEST_NEEDS) - entry.capabilities)
    able = [e.name for e in policy.models.values() if e.tier is not Tier.AUTO and can_serve(e, facts)]
    hint = f"use one that does: {', '.join(able)}" if able else \
        "no configured model does; add one to config.yaml (see README 'Adding a model')"
    return Decision(Route.NONE, None, Reason.CAPABILITY, None,
                    f"Model {entry.name} does not support {', '.join(missing)}; {hint}.")


def _cloud_problem(facts: RequestFacts, state: BackendState) -> str | None:
    if facts.cloud_denied is Reason.BUDGET:
        return "this key's monthly cloud budget is used up"
    if facts.cloud_denied is Reason.LOCAL_ONLY:
        return "the request is local-only (it may not leave this host)"
    return None if state.cloud_ready else (state.cloud_problem or "cloud tier unavailable")


def _unavailable(facts: RequestFacts, state: BackendState, local: ModelEntry | None, why: str | None = None) -> Decision:
    local_cause = why or state.local_problem or (
        f"model {local.name} is not installed in Ollama" if local else "no local model can serve this request")
    detail = f"local tier: {local_cause}; cloud tier: {_cloud_problem(facts, state)}"
    return Decision(Route.NONE, None, facts.cloud_denied or Reason.NO_BACKEND, None, detail)


def decide(facts: RequestFacts, policy: Policy, state: BackendState) -> Decision | None:
    """Pick the route for a request, or None when the model is not one the policy knows."""
    entry = policy.models.get(facts.model)
    if entry is None:
        return None
    if entry.mode != "chat":
        return Decision(Route.NONE, None, Reason.CAPABILITY, None,
                        f"Model {entry.name} is an embedding model; send it to /v1/embeddings, or pick a chat model.")
    substituted = False
    if entry.tier is not Tier.AUTO:
        if not can_serve(entry, facts):
            alternative = _capable(policy, entry.tier, None, facts)
            if alternative is None:
                return _refuse_capability(policy, entry, facts)
            entry, substituted = alternative, True
        elif entry.tier is Tier.CLOUD and facts.max_tokens and entry.max_output_tokens and \
                facts.max_tokens > entry.max_output_tokens:  # a local model's limit is its window (rule b)
            return Decision(Route.NONE, None, Reason.OUTPUT_LIMIT, None,
                            f"max_tokens {facts.max_tokens} is more than {entry.name} allows ({entry.max_output_tokens}); "
                            f"send max_tokens <= {entry.max_output_tokens}, or use model \"auto\".")
    cloud_ok = state.cloud_ready and facts.cloud_denied is None
    if entry.tier is Tier.CLOUD and facts.cloud_denied is Reason.BUDGET:  # the client named a model it may not pay for
        return Decision(Route.NONE, None, Reason.BUDGET, None, f"{entry.name} is a cloud model and "
                        f"{_cloud_problem(facts, state)}; use model \"auto\" or a local model meanwhile.")
    if entry.tier is Tier.CLOUD:
        local = _local_fallback(policy, entry.fallback, facts, state)
        if cloud_ok:
            reason = Reason.CAPABILITY if substituted else Reason.EXPLICIT
            no_fallback = "" if local else \
                f"no installed local model can take over this request (~{needed_context(facts, policy)} tokens)"
            return Decision(Route.CLOUD, entry.name, reason, local.name if local else None, no_fallback=no_fallback)
        if local is not None:
            return Decision(Route.LOCAL, local.name, facts.cloud_denied or Reason.CLOUD_UNAVAILABLE, None,
                            _cloud_problem(facts, state) or "")
        return _unavailable(facts, state, None, "no installed local model can serve this request")

    local = entry if entry.tier is Tier.LOCAL else _capable(policy, Tier.LOCAL, None, facts)
    preferred_cloud = entry.fallback if entry.tier is Tier.LOCAL else None
    cloud = _capable(policy, Tier.CLOUD, preferred_cloud, facts)
    if local is None:  # auto, and no local model takes this request
        if cloud is not None and cloud_ok:
            return Decision(Route.CLOUD, cloud.name, Reason.CAPABILITY, None, "no local model supports this request")
        if cloud is None:
            return _refuse_capability(policy, entry, facts)
        return _unavailable(facts, state, None)
    local_ok = state.local_ok(local)
    why = complexity(facts, policy, local)
    if why is None and not local_ok:
        why = Reason.LOCAL_UNAVAILABLE, state.local_problem or f"model {local.name} is not installed in Ollama"
    cloud_ok = cloud_ok and cloud is not None
    wait = state.local_wait.get(local.name, 0.0)
    if why is None and cloud_ok and 0 < policy.local_max_wait_seconds < wait and (
            entry.tier is Tier.AUTO or policy.spill_named_local):
        why = Reason.LOCAL_BUSY, f"expected local wait {wait:.1f} s > {policy.local_max_wait_seconds:g} s"
    if why is None:
        reason = Reason.CAPABILITY if substituted else Reason.SIMPLE
        return Decision(Route.LOCAL, local.name, reason, cloud.name if cloud_ok else None)
    if cloud_ok:
        if local_ok and fits(local, facts, policy):
            return Decision(Route.CLOUD, cloud.name, why[0], local.name, why[1])
        no_fallback = "" if not local_ok else \
            f"~{needed_context(facts, policy)} tokens do not fit {local.name}'s context window ({local.context_window})"
        return Decision(Route.CLOUD, cloud.name, why[0], None, why[1], no_fallback)
    if local_ok and fits(local, facts, policy):
        cause = _cloud_problem(facts, state) or "no cloud model supports this request"
        return Decision(Route.LOCAL, local.name, facts.cloud_denied or Reason.CLOUD_UNAVAILABLE, None, f"{why[1]}; {cause}")
    too_big = None if not local_ok else \
        f"the request (~{needed_context(facts, policy)} tokens) does not fit {local.name}'s context window ({local.context_window})"
    return _unavailable(facts, state, local, too_big)


def decide_embedding(model: str, policy: Policy, state: BackendState) -> Decision | None:
    """Embeddings are local only: DeepSeek has no embeddings API, so there is no cloud fallback and no
    silent substitute (a different model's vectors would not match the ones already stored)."""
    entry = policy.models.get(model)
    if entry is None:
        return None
    if entry.mode != "embedding":
        able = [e.name for e in policy.models.values() if e.mode == "embedding"]
        hint = f"use {', '.join(able)}" if able else "add one to config.yaml (nomic-embed-text)"
        return Decision(Route.NONE, None, Reason.CAPABILITY, None, f"Model {model} does not make embeddings; {hint}.")
    if state.local_ok(entry):
        return Decision(Route.LOCAL, entry.name, Reason.EMBEDDING)
    local_cause = state.local_problem or f"model {entry.name} is not installed in Ollama (gateway models pull {entry.backend_model})"
    return Decision(Route.NONE, None, Reason.NO_BACKEND, None,
                    f"local tier: {local_cause}; cloud tier: DeepSeek has no embeddings API, so there is no fallback")
