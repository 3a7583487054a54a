"""LiteLLM callback that applies the routing policy (config.yaml: `hooks.routing.instance`).

- pre-call (chat, the Responses API, legacy completions, embeddings: ROUTED_CALL_TYPES): decide
  local/cloud with custom_router.decide, rewrite `data["model"]`, and set the
  per-request `fallbacks` to the other tier so LiteLLM's router retries there on failure
  (including a stream that fails before its first token); a refusal (a capability no model has,
  max_tokens over a named model's limit, a used-up budget, nothing available) becomes an
  OpenAI-shaped error with the status of its reason;
- per deployment (each attempt, the fallback too): shape the request for that model with
  custom_router.params (num_ctx, clamped max_tokens, thinking parameters, json_schema for the
  cloud), and note what was clamped or dropped for the response headers;
- post-call success: check a cloud reply to a translated json_schema against the schema;
- failure events: mark Ollama down at once on a connection failure and remember each
  tier's cause for the error message;
- post-call failure: when both tiers failed (or the other was unavailable) answer 503 with
  an OpenAI-shaped error naming both causes, and route `none` (nothing served it);
- Anthropic Messages (/v1/messages) go through the same decision: measured with
  custom_router.messages_request_facts; LiteLLM serves them on Ollama by translating to chat, and on
  DeepSeek through its Anthropic-compatible endpoint (README "Anthropic Messages" says why).
Anything unexpected inside the hook is logged and the request goes on unchanged (fail open),
except the deliberate 503 when no backend can serve.
"""

from __future__ import annotations

import logging
import time

import json
from dataclasses import replace

import jsonschema
from fastapi import HTTPException
from litellm.integrations.custom_logger import CustomLogger
from litellm.proxy._types import ProxyException

from custom_router.params import adapt
from custom_router.policy import (
    REFUSAL_STATUS,
    Decision,
    Reason,
    Route,
    decide,
    decide_embedding,
    looks_truncated,
    messages_request_facts,
    request_facts,
)
from hooks import context, inflight
from hooks.cost_rules import reset_text
from hooks.responses import RESPONSES_CALL_TYPES, continue_conversation
from hooks.runtime import deployment_of, get_runtime
from litellm_compat.wording import (FALLBACK_FAILED, RAW_MODEL_NAME_KEY, hidden_params, is_connect_failure,
                                    is_ollama_error_line)

log = logging.getLogger("gateway.routing")

EMBEDDING_CALL_TYPES = frozenset({"aembedding", "embeddings"})
CHAT_CALL_TYPES = frozenset({"acompletion", "completion"})
TEXT_COMPLETION_CALL_TYPES = frozenset({"atext_completion", "text_completion"})  # legacy /v1/completions
# Anthropic's /v1/messages: measured from its own body shape, then decided like chat (README "Anthropic Messages").
MESSAGES_CALL_TYPES = frozenset({"anthropic_messages"})
# Chat, Responses and completions bodies are all measured by custom_router.facts.request_facts.
ROUTED_CALL_TYPES = (CHAT_CALL_TYPES | TEXT_COMPLETION_CALL_TYPES | RESPONSES_CALL_TYPES | EMBEDDING_CALL_TYPES
                     | MESSAGES_CALL_TYPES)
CACHED_CALL_TYPES = CHAT_CALL_TYPES | EMBEDDING_CALL_TYPES  # replies hooks.cache may replay
REFUSAL_CODES = {Reason.CAPABILITY: "model_not_capable", Reason.OUTPUT_LIMIT: "max_tokens_too_large",
                 Reason.BUDGET: "budget_exceeded", Reason.LOCAL_ONLY: "local_only_unavailable",
                 Reason.NO_BACKEND: "no_backend_available"}


def refusal(decision: Decision, max_tokens_param: str = "max_tokens") -> ProxyException:
    """A Route.NONE decision as the error the client gets (gateway.errors moves `type` to `code`)."""
    status = REFUSAL_STATUS.get(decision.reason, 503)
    prefix = "No backend can serve this request. " if status == 503 else ""
    suffix = f" The budget resets on {reset_text(time.time())}." if decision.reason is Reason.BUDGET else ""
    detail = decision.detail if decision.detail.endswith(".") or not suffix else f"{decision.detail}."
    return ProxyException(message=f"{prefix}{detail}{suffix}", type=REFUSAL_CODES.get(decision.reason, "error"),
                          param=max_tokens_param if decision.reason is Reason.OUTPUT_LIMIT else None, code=status)


def schema_error(model: str, why: str) -> str:
    return (f"{model} answered, but {why}: the cloud tier has a JSON mode without schemas. Retry, or name a local "
            "model, whose output Ollama constrains to the schema.")


def schema_mismatch(content: object, schema: dict) -> str | None:
    """Why a reply is not a JSON value valid against `schema`, or None when it is."""
    try:
        jsonschema.validate(json.loads(content if isinstance(content, str) else ""), schema)
    except (ValueError, TypeError):
        return "the reply is not valid JSON"
    except jsonschema.ValidationError as exc:
        return f"the reply does not match the schema ({exc.message[:200]})"
    except jsonschema.SchemaError as exc:
        return f"the request's schema is not a valid JSON Schema ({exc.message[:200]})"
    return None


def failure_cause(exc: BaseException) -> str:
    """A short, stable cause label for logs, metrics and error messages."""
    name = type(exc).__name__
    status = getattr(exc, "status_code", None)
    if is_ollama_error_line(exc):
        return "server-error"
    if "Timeout" in name:
        return "timeout"
    if "MidStream" in name:
        return "stream-error"
    if "APIConnectionError" in name:
        return "connection"
    return {401: "auth", 402: "payment", 404: "model-not-found", 429: "rate-limit"}.get(
        status, "server-error" if isinstance(status, int) and status >= 500 else "error"
    )


def is_backend_failure(exc: BaseException) -> bool:
    """Client mistakes (400/422) stay as they are; everything else is the backend's fault."""
    return is_ollama_error_line(exc) or getattr(exc, "status_code", 500) not in (400, 413, 422)


def metadata_key(data: dict) -> str:
    """Where LiteLLM keeps its own metadata for this endpoint: `litellm_metadata` on the Responses API
    (and the other LITELLM_METADATA_ROUTES), whose `metadata` is the client's and goes to the provider."""
    return "litellm_metadata" if isinstance(data.get("litellm_metadata"), dict) else "metadata"


class RoutingHook(CustomLogger):
    async def async_pre_call_hook(self, user_api_key_dict, cache, data: dict, call_type):
        if call_type not in ROUTED_CALL_TYPES:
            return data
        if call_type in RESPONSES_CALL_TYPES:
            await continue_conversation(data)  # previous_response_id: route the whole conversation
        runtime = get_runtime()
        ctx = context.current.get()
        if call_type in EMBEDDING_CALL_TYPES:
            decision = decide_embedding(str(data.get("model", "")), runtime.policy, runtime.monitor.state)
        else:
            facts = messages_request_facts(data) if call_type in MESSAGES_CALL_TYPES else request_facts(data)
            if ctx is not None and ctx.cloud_denied is not None:
                facts = replace(facts, cloud_denied=ctx.cloud_denied)
            state = await inflight.reserve(ctx, facts, runtime)  # the backend state with the expected local waits
            decision = decide(facts, runtime.policy, state)
            await inflight.settle(ctx, decision, runtime)  # a lease is kept by local requests only
        if decision is None:
            return data  # not a model the policy knows: LiteLLM answers as usual
        if ctx is not None:
            ctx.decision = decision
        if decision.route is Route.NONE:
            error = refusal(decision, "max_tokens" if call_type in EMBEDDING_CALL_TYPES else facts.max_tokens_param)
            if ctx is not None:  # gateway.errors sends it (LiteLLM's /v1/messages handler drops the code)
                ctx.final_error = (int(error.code), error.message, error.param, error.type)
            raise error
        data["model"] = decision.model
        data["fallbacks"] = [decision.fallback] if decision.fallback else []
        metadata = data.setdefault(metadata_key(data), {})
        metadata.update(
            {RAW_MODEL_NAME_KEY: True, "gateway_route": decision.route.value, "gateway_reason": decision.reason.value}
        )
        return data

    async def async_pre_call_deployment_hook(self, kwargs: dict, call_type):
        """Shape the request for the model of this attempt (custom_router.params)."""
        try:
            metadata = kwargs.get("litellm_metadata") or kwargs.get("metadata") or {}
            entry = get_runtime().policy.models.get(
                metadata.get("deployment_model_name") or metadata.get("model_group") or ""
            )
            if entry is None:
                return None
            change = adapt(entry, kwargs)
            for name, value in change.changes.items():
                if value is None:
                    kwargs.pop(name, None)
                else:
                    kwargs[name] = value
            ctx = context.current.get()
            if ctx is not None:
                ctx.clamped[:] = change.clamped
                ctx.dropped[:] = change.dropped
                ctx.reply_schema = change.schema
            return kwargs
        except Exception:  # fail open: the request goes as the client sent it
            log.exception("deployment hook failed")
            return None

    async def async_post_call_success_hook(self, data, user_api_key_dict, response):
        """Name the model group that actually served (after a fallback too), not `auto`; check a
        translated json_schema reply."""
        hidden = hidden_params(response)
        served = deployment_of(hidden.get("model_id"))
        if served is None and isinstance(response, dict):  # /v1/messages answers a dict; its deployment is in metadata
            served = deployment_of(((data.get("litellm_metadata") or {}).get("model_info") or {}).get("id"))
        if served is not None and isinstance(response, dict) and "model" in response:
            response["model"] = served[0]
        elif served is not None and hasattr(response, "model"):
            response.model = served[0]
        schema = getattr(context.current.get(), "reply_schema", None)  # set when the serving attempt translated it
        for choice in (getattr(response, "choices", None) or []) if schema is not None else ():
            why = schema_mismatch(getattr(getattr(choice, "message", None), "content", None), schema)
            if why is not None:
                raise ProxyException(message=schema_error(served[0] if served else "the cloud model", why),
                                     type="schema_mismatch", param="response_format", code=502)
        return response

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        """A local answer to a prompt Ollama cut (silently, with a 200): log it and count it."""
        try:
            group = (kwargs.get("standard_logging_object") or {}).get("model_group") or kwargs.get("model")
            if get_runtime().tier_of(group) != "local":
                return
            evaluated = getattr(getattr(response_obj, "usage", None), "prompt_tokens", 0)
            facts = request_facts(kwargs)
            if isinstance(evaluated, int) and looks_truncated(facts, evaluated):
                from hooks import metrics

                log.warning("Ollama evaluated only %d tokens of a ~%d-byte prompt for %s: it truncated the prompt; "
                            "check max_input_tokens against the model's context length (`gateway doctor`)",
                            evaluated, facts.prompt_bytes, group)
                metrics.truncated_prompt(str(group))
        except Exception:  # a logging callback must never break a request
            log.exception("routing success callback failed")

    async def async_log_failure_event(self, kwargs, response_obj, start_time, end_time):
        try:
            exc = kwargs.get("exception")
            group = (kwargs.get("litellm_params") or {}).get("metadata", {}).get("model_group") or kwargs.get("model")
            runtime = get_runtime()
            tier = runtime.tier_of(group) or "unknown"
            cause = failure_cause(exc) if exc is not None else "error"
            if tier == "local" and cause == "connection" and is_connect_failure(exc):  # refused: down, not a cut reply
                runtime.monitor.mark_local_down(f"Ollama connection failed ({_message(exc)})")
            elif tier == "local" and cause == "model-not-found":
                entry = runtime.policy.models.get(group)
                if entry is not None:
                    runtime.monitor.mark_model_missing(entry.backend_model)
        except Exception:  # a logging callback must never break a request
            log.exception("routing failure callback failed")

    async def async_post_call_failure_hook(
        self, request_data, original_exception, user_api_key_dict, traceback_str=None
    ):
        ctx = context.current.get()
        decision = ctx.decision if ctx else None
        if decision is None or decision.route is Route.NONE or not is_backend_failure(original_exception):
            return None
        message = str(getattr(original_exception, "message", None) or original_exception)
        other = "cloud" if decision.route is Route.LOCAL else "local"
        first = f"{decision.route.value} tier ({decision.model}) failed: {failure_cause(original_exception)}"
        if decision.fallback is None:
            state = get_runtime().monitor.state
            denied = {Reason.LOCAL_ONLY: "the request is local-only, so the cloud tier was not tried",
                      Reason.BUDGET: "this key's monthly cloud budget is used up"}.get(ctx.cloud_denied)
            problem = decision.no_fallback or (state.cloud_problem if other == "cloud" else state.local_problem)
            second = (
                denied if other == "cloud" and denied else f"{other} tier unavailable: {problem or 'no fallback model'}"
            )
            reason = decision.reason  # nothing was tried after the first tier: the reason it was chosen stays
        elif FALLBACK_FAILED in message:
            failed = _short(message.split(FALLBACK_FAILED, 1)[1])
            second = f"fallback to {other} tier ({decision.fallback}) also failed: {failed}"
            reason = Reason(f"{decision.route.value}-error-fallback")  # the planned tier failed and fell back
        else:
            return None  # LiteLLM did not try the other tier: its own error says why
        detail = f"Both tiers failed. {first} ({_short(message)}); {second}"
        ctx.final_error = (503, detail, None, None)  # /v1/messages: LiteLLM's handler ignores the returned exception
        # x-gateway-route: none (nothing served it); after a failed fallback the reason names the tier planned
        # first, which the ledger's and the metrics' fallback counts read (custom_router.policy.fallback_tiers)
        ctx.decision = replace(decision, route=Route.NONE, reason=reason)
        return HTTPException(status_code=503, detail=detail)


def _short(text: str, limit: int = 240) -> str:
    text = (
        text.split("\n\nLiteLLM:", 1)[0]
        .split("Debug Information", 1)[0]
        .split("Traceback (most recent call last)", 1)[0]
    )
    text = text.replace("\n", " ").strip()
    return text if len(text) < limit else text[: limit - 3] + "..."


def _message(exc: BaseException | None) -> str:
    return _short(str(getattr(exc, "message", None) or exc or ""))


instance = RoutingHook()
