"""LiteLLM callback that fills the request context with what the ledger needs
(config.yaml: `hooks.usage.instance`, listed before `hooks.routing.instance`).

- pre-call: remember the model group the client asked for (before routing rewrites it; only a
  configured group, never a raw client string: gateway.errors 404s the others), the key
  LiteLLM authenticated when the gateway did not see it (DB mode's virtual keys), and ask
  the backend for stream usage (`stream_options.include_usage`), which LiteLLM strips from
  the client's stream again unless the client asked for it itself;
- success: tokens (backend usage; counted with LiteLLM's tokenizer only when the backend
  sent none), the model group that served, cloud reachability, a local model's speed (hooks.inflight);
- failure: count backend failures, mark the cloud unreachable on a connection failure (a real
  one: LiteLLM also reports its own TypeErrors as APIConnectionError, e.g. on a multipart body);
- fallback events: the cause of the first tier's failure.
Every method only records; errors are logged and never reach the request (fail open).
"""

from __future__ import annotations

import logging

from litellm.integrations.custom_logger import CustomLogger

from hooks import context, inflight
from hooks.context import Usage
from hooks.routing import failure_cause
from hooks.runtime import get_runtime
from litellm_compat.wording import is_connect_failure
from proxy_config.keys import key_id

log = logging.getLogger("gateway.usage")

STRIP_STREAM_USAGE = "_litellm_strip_stream_usage"  # LiteLLM: drop the injected usage chunk from the client stream


def request_stream_usage(data: dict) -> None:
    """Make the backend report usage on a stream without changing what the client receives."""
    options = data.get("stream_options")
    options = options if isinstance(options, dict) else {}
    if data.get("stream") is True and options.get("include_usage") is not True:
        data["stream_options"] = {**options, "include_usage": True}
        data[STRIP_STREAM_USAGE] = True


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def usage_from_response(response_obj: object) -> Usage | None:
    """Backend usage (Ollama prompt_eval_count/eval_count and DeepSeek usage, as LiteLLM maps them)."""
    usage = getattr(response_obj, "usage", None)
    if usage is None:
        return None
    prompt, completion = _int(getattr(usage, "prompt_tokens", 0)), _int(getattr(usage, "completion_tokens", 0))
    if prompt == 0 and completion == 0:
        return None  # LiteLLM reports zeros when the backend sent no usage
    details = getattr(usage, "completion_tokens_details", None)
    cached = getattr(getattr(usage, "prompt_tokens_details", None), "cached_tokens", None)
    return Usage(prompt=prompt, completion=completion, reasoning=_int(getattr(details, "reasoning_tokens", 0)),
                 cached=_int(cached))


def counted_usage(kwargs: dict, response_obj: object) -> Usage:
    """Estimate tokens with LiteLLM's tokenizer when the backend reported none."""
    import litellm

    model = str(kwargs.get("model") or "")
    messages = kwargs.get("messages") or []
    text, reasoning = "", ""
    for choice in getattr(response_obj, "choices", None) or []:
        message = getattr(choice, "message", None)
        text += str(getattr(message, "content", None) or "")
        reasoning += str(getattr(message, "reasoning_content", None) or "")
    prompt = litellm.token_counter(model=model, messages=messages) if messages else 0
    reasoning_tokens = (litellm.token_counter(model=model, text=reasoning, count_response_tokens=True)
                        if reasoning else 0)
    completion = litellm.token_counter(model=model, text=text, count_response_tokens=True) if text else 0
    return Usage(prompt=prompt, completion=completion + reasoning_tokens, reasoning=reasoning_tokens, counted=True)


class UsageCallback(CustomLogger):
    async def async_pre_call_hook(self, user_api_key_dict, cache, data: dict, call_type):
        ctx = context.current.get()
        if ctx is not None:
            model = data.get("model")
            if ctx.requested_model is None and isinstance(model, str) and get_runtime().tier_of(model) is not None:
                ctx.requested_model = model
            if ctx.key_hash is None and getattr(user_api_key_dict, "api_key", None):
                ctx.key_hash = key_id(user_api_key_dict.api_key)  # DB mode: LiteLLM's token is the key's sha256
        request_stream_usage(data)
        return data

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        ctx = context.current.get()
        try:
            group = (kwargs.get("standard_logging_object") or {}).get("model_group") or kwargs.get("model")
            tier = get_runtime().tier_of(group)
            if tier == "cloud":
                get_runtime().monitor.mark_cloud_reachable()
            usage = usage_from_response(response_obj) or counted_usage(kwargs, response_obj)
            if ctx is not None:
                ctx.served_model = group
                ctx.usage = usage
            if tier == "local":  # the measured speed of the local model (hooks.inflight)
                backend_model = get_runtime().policy.models[group].backend_model
                inflight.record_answer(backend_model, kwargs, usage.completion, end_time)
        except Exception:  # a logging callback must never break a request
            log.exception("usage success callback failed")
        finally:
            if ctx is not None:
                ctx.logged.set()

    async def async_log_failure_event(self, kwargs, response_obj, start_time, end_time):
        ctx = context.current.get()
        try:
            exc = kwargs.get("exception")
            group = (kwargs.get("litellm_params") or {}).get("metadata", {}).get("model_group") or kwargs.get("model")
            runtime = get_runtime()
            if runtime.tier_of(group) == "cloud" and is_connect_failure(exc):
                runtime.monitor.mark_cloud_unreachable(f"DeepSeek connection failed ({type(exc).__name__})")
            if ctx is not None:
                ctx.backend_failures += 1
        except Exception:
            log.exception("usage failure callback failed")
        finally:
            if ctx is not None:
                ctx.logged.set()

    async def log_success_fallback_event(self, original_model_group, kwargs, original_exception):
        self._fallback(original_exception)

    async def log_failure_fallback_event(self, original_model_group, kwargs, original_exception):
        self._fallback(original_exception)

    async def async_post_call_failure_hook(self, request_data, original_exception, user_api_key_dict,
                                           traceback_str=None):
        ctx = context.current.get()
        if ctx is not None and ctx.error_type is None:
            ctx.error_type = failure_cause(original_exception)
        return None

    @staticmethod
    def _fallback(original_exception: BaseException) -> None:
        ctx = context.current.get()
        if ctx is not None and ctx.fallback_cause is None:
            ctx.fallback_cause = failure_cause(original_exception)


instance = UsageCallback()
