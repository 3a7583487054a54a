"""The routing policy: pure functions from a request, the policy and the backend state to a decision.

Nothing here does I/O or imports LiteLLM, so every rule is testable with plain data.
Order of the rules (see README "Routing"):
  0. the model must be able to serve the request: a named model that lacks a capability the
     request needs (tools, a forced tool call, json_schema, vision) is replaced by a capable model of the same tier
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

from collections.abc import Iterator

from custom_router.data import (  # noqa: F401  (re-exported: the policy's vocabulary)
    CAPABILITIES,
    REFUSAL_STATUS,
    REQUEST_NEEDS,
    BackendState,
    Decision,
    ModelEntry,
    Policy,
    Reason,
    RequestFacts,
    Route,
    Tier,
    normalize_tag,
)
from custom_router.facts import (  # noqa: F401  (re-exported)
    can_serve,
    estimate_tokens,
    fits,
    looks_truncated,
    messages_request_facts,
    needed_context,
    prompt_tokens,
    request_facts,
)


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


def _unavailable(
    facts: RequestFacts, state: BackendState, local: ModelEntry | None, why: str | None = None
) -> Decision:
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
                            f"{facts.max_tokens_param} {facts.max_tokens} is more than {entry.name} allows "
                            f"({entry.max_output_tokens}); send {facts.max_tokens_param} <= {entry.max_output_tokens}, "
                            "or use model \"auto\".")
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
        return Decision(
            Route.LOCAL, local.name, facts.cloud_denied or Reason.CLOUD_UNAVAILABLE, None, f"{why[1]}; {cause}"
        )
    too_big = None if not local_ok else (f"the request (~{needed_context(facts, policy)} tokens) does not fit "
                                         f"{local.name}'s context window ({local.context_window})")
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
    local_cause = (
        state.local_problem
        or f"model {entry.name} is not installed in Ollama (gateway models pull {entry.backend_model})"
    )
    return Decision(Route.NONE, None, Reason.NO_BACKEND, None,
                    f"local tier: {local_cause}; cloud tier: DeepSeek has no embeddings API, so there is no fallback")


def fallback_tiers(route: str, reason: str) -> tuple[str, str]:
    """(from, to) tier of a fallback: the planned tier is in the reason (`local-error-fallback`), whether
    the other tier served (route = that tier) or failed too (route `none`); else it is the route."""
    planned = reason.removesuffix("-error-fallback") if reason.endswith("-error-fallback") else route
    return planned, "local" if planned == "cloud" else "cloud"
