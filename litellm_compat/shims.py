"""Every shim on LiteLLM: its target, the check of that target, and when it is applied.

`apply(litellm_app, settings)` runs once per worker in create_app, before Starlette builds LiteLLM's
middleware stack and before LiteLLM's startup; `after_startup(settings)` runs in the serving loop
when that startup is done. Both return one `Outcome` per shim, which gateway.app publishes as
`gateway_litellm_shim_applied{shim}` (hooks.metrics); `gateway doctor` shows `check_all`.

Each `Shim` names the LiteLLM attributes it rebinds (`targets`: "module:Class.attribute") with
the parameters the shim relies on. Before applying, the check imports each target and compares
its signature: a target that is gone, or has lost or renamed a parameter the shim reads, skips
the shim. New parameters are fine: the replacement functions take `*args, **kwargs`.

How it fails: never into the gateway. A shim whose target does not hold, or that raises while
applying, is skipped with a WARNING naming the target and why; LiteLLM's own behaviour is kept,
which costs speed, never correctness. Shims skipped on purpose (DB mode, `skip`, OpenTelemetry
installed, not glibc) are logged at INFO with the reason. One INFO line per worker lists what
applied and what did not.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass

from litellm_compat import fixes, tuning

log = logging.getLogger("gateway.tuning")


@dataclass(frozen=True)
class Shim:
    name: str
    purpose: str
    targets: tuple[tuple[str, tuple[str, ...]], ...]  # ("module:Class.attribute", parameters the shim reads)
    db_mode_off: bool = False  # LiteLLM virtual keys need what it skips, or the admin UI edits it in place
    after_startup: bool = False


@dataclass(frozen=True)
class Outcome:
    name: str
    applied: bool
    detail: str  # what it did, or why it was skipped


LOGGING = "litellm.litellm_core_utils.litellm_logging:Logging"
SHIMS: tuple[Shim, ...] = (
    Shim("malloc-arenas", "cap glibc's malloc arenas at 2", ()),
    Shim("middlewares", "drop LiteLLM app middlewares this product does not use",
         tuple((f"{module}:{name}", ()) for module, name in tuning.DROPPED_MIDDLEWARES)),
    Shim("otel-seed", "skip the per-request OpenTelemetry import that cannot succeed",
         (("litellm.proxy.auth.user_api_key_auth:_seed_request_destinations", ("user_api_key_dict", "request")),)),
    Shim("ollama-static-lookup", "keep the lowercased cost-map keys for the static Ollama model check",
         (("litellm.llms.ollama.common_utils:OllamaModelInfo._is_static_ollama_model", ("model",)),
          ("litellm.llms.ollama.common_utils:OllamaModelInfo._strip_ollama_model_prefix", ("model",)))),
    Shim("route-checks", "memoize the management-route check",
         (("litellm.proxy.auth.route_checks:RouteChecks.is_management_route", ("route",)),)),
    Shim("coordination-redis", "keep REDIS_URL for the gateway's limiter, not LiteLLM's coordination Redis",
         (("litellm.proxy.proxy_server:ProxyConfig._init_coordination_redis_env_fallback", ("litellm_settings",)),),
         db_mode_off=True),
    Shim("deployment-usage", "skip TPM/RPM bookkeeping for deployments without limits",
         (("litellm.router:Router._increment_deployment_usage", ("deployment_id", "model_group")),
          ("litellm.router:deployment_has_io_token_limits", ("deployment",))), db_mode_off=True),
    Shim("proxy-hooks", "do not register LiteLLM proxy hooks for virtual keys, agents and caching",
         (("litellm.proxy.hooks:PROXY_HOOKS", ()),), db_mode_off=True),
    Shim("deployment-objects", "build each deployment's pydantic object once",
         (("litellm.router:Router.get_deployment", ("model_id",)),), db_mode_off=True),
    Shim("free-deployment-cost", "answer 0 for deployments priced at 0, without cost-map lookups",
         ((f"{LOGGING}.response_cost_calculator", ("result", "router_model_id")),
          (f"{LOGGING}._record_zero_cost_diagnostic", ("result", "response_cost", "router_model_id"))),
         db_mode_off=True),
    Shim("bridge-check", "remember the Responses-API bridge check per Ollama/DeepSeek model",
         (("litellm.main:responses_api_bridge_check", ("model", "custom_llm_provider")),)),
    Shim("inline-thinking", "a correction, not speed: inline <think> streams keep their reasoning (fixes.py)",
         (("litellm.llms.ollama.chat.transformation:OllamaChatCompletionResponseIterator.chunk_parser", ("chunk",)),)),
    Shim("completion-text", "a correction: a /v1/completions stream's last chunk has text \"\", never null (fixes.py)",
         (("litellm.utils:TextCompletionStreamWrapper.convert_to_text_completion_object", ("chunk",)),)),
    Shim("litellm-info-logs", "keep LiteLLM's three INFO lines per request out of the log", (), after_startup=True),
    Shim("inline-completion", "run LiteLLM's completion() set-up inline for the shipped providers",
         (("litellm.main:completion", ("model",)), ("litellm.main:acompletion", ())), after_startup=True),
)
BY_NAME = {shim.name: shim for shim in SHIMS}
DB_MODE_OFF = frozenset(shim.name for shim in SHIMS if shim.db_mode_off)


def target_problem(target: str, parameters: tuple[str, ...]) -> str | None:
    """None when `target` ("module:Class.attribute") exists with `parameters`, else what is wrong."""
    module_name, _, path = target.partition(":")
    try:
        obj: object = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or a module that fails while importing
        return f"{module_name} cannot be imported ({type(exc).__name__}: {exc})"
    for part in path.split("."):
        if not hasattr(obj, part):
            return f"{target} does not exist"
        obj = getattr(obj, part)
    if not parameters:
        return None
    if not callable(obj):
        return f"{target} is not callable"
    try:
        found = inspect.signature(obj).parameters  # follows __wrapped__: an applied shim shows LiteLLM's signature
    except (TypeError, ValueError):
        return f"{target} is not callable"
    missing = [name for name in parameters if name not in found]
    return f"{target} has no parameter {', '.join(missing)}" if missing else None


def check(shim: Shim) -> str | None:
    """Why `shim`'s targets do not hold in the installed LiteLLM, or None when they all do."""
    problems = [p for target, params in shim.targets if (p := target_problem(target, params))]
    return "; ".join(problems) or None


def check_all(db_mode: bool = False) -> list[Outcome]:
    """What `apply` would do here, without applying anything (gateway doctor, tests/architecture)."""
    out = []
    for shim in SHIMS:
        problem = check(shim)
        if problem:
            out.append(Outcome(shim.name, False, f"target changed: {problem}"))
        elif db_mode and shim.db_mode_off:
            out.append(Outcome(shim.name, False, "not in DB mode"))
        else:
            out.append(Outcome(shim.name, True, shim.purpose))
    return out


def _run(shim: Shim, action: Callable[[], object], skip: frozenset[str], db_mode: bool) -> Outcome:
    if shim.name in skip:
        return Outcome(shim.name, False, "skipped on request")
    if db_mode and shim.db_mode_off:
        return Outcome(shim.name, False, "not in DB mode: LiteLLM virtual keys need what it skips")
    problem = check(shim)
    if problem:
        log.warning("litellm_compat: %s skipped, its target changed: %s; LiteLLM's behaviour is kept (slower, "
                    "still correct). Run scripts/try-litellm.sh to see every shim and wording.", shim.name, problem)
        return Outcome(shim.name, False, f"target changed: {problem}")
    try:
        result = action()
    except Exception as exc:  # a shim must never stop the gateway from starting
        log.warning("litellm_compat: %s failed while applying; LiteLLM's behaviour is kept", shim.name, exc_info=True)
        return Outcome(shim.name, False, f"failed: {type(exc).__name__}")
    if isinstance(result, list):  # the names it removed
        return Outcome(shim.name, bool(result), f"-{','.join(result)}" if result else "nothing to remove")
    return Outcome(shim.name, True, "") if result else Outcome(shim.name, False, _not_applied_reason(shim.name))


def _not_applied_reason(name: str) -> str:
    return {"otel-seed": "OpenTelemetry is installed: LiteLLM's behaviour is kept",
            "malloc-arenas": "not glibc: no arenas to cap",
            "litellm-info-logs": "debug logging is on",
            "middlewares": "LiteLLM's middleware stack was already built"}.get(name, "already applied in this process")


def _log(outcomes: list[Outcome], when: str) -> None:
    applied = [o.name + (f"({o.detail})" if o.detail else "") for o in outcomes if o.applied]
    skipped = [f"{o.name} ({o.detail})" for o in outcomes if not o.applied]
    log.info("litellm_compat %s: applied %s; not applied: %s", when, " ".join(applied) or "nothing",
             ", ".join(skipped) or "none")


def apply(litellm_app, settings, skip: frozenset[str] = frozenset()) -> list[Outcome]:
    """Apply the shims that run before LiteLLM's startup; one Outcome per shim (also logged)."""
    db_mode = settings.db_mode
    actions: dict[str, Callable[[], object]] = {
        "malloc-arenas": tuning.limit_malloc_arenas,
        "middlewares": lambda: tuning.drop_middlewares(litellm_app, db_mode),
        "otel-seed": tuning.skip_failed_otel_seed,
        "ollama-static-lookup": tuning.cache_ollama_static_lookup,
        "route-checks": tuning.cache_management_route_check,
        "coordination-redis": tuning.no_env_coordination_redis,
        "deployment-usage": tuning.skip_unlimited_deployment_usage,
        "proxy-hooks": tuning.drop_unused_proxy_hooks,
        "deployment-objects": tuning.cache_deployment_objects,
        "free-deployment-cost": tuning.zero_cost_for_free_deployments,
        "bridge-check": tuning.cache_bridge_check,
        "inline-thinking": fixes.split_inline_thinking,
        "completion-text": fixes.text_never_null,
    }
    outcomes = [_run(BY_NAME[name], action, skip, db_mode) for name, action in actions.items()]
    _log(outcomes, "before startup")
    return outcomes


def after_startup(settings, skip: frozenset[str] = frozenset()) -> list[Outcome]:
    """Run in the serving event loop once LiteLLM's startup is complete (it sets its log levels there)."""
    db_mode = settings.db_mode
    actions: dict[str, Callable[[], object]] = {
        "litellm-info-logs": lambda: tuning.quiet_litellm_loggers(settings),
        "inline-completion": tuning.inline_completion_setup,
    }
    outcomes = [_run(BY_NAME[name], action, skip, db_mode) for name, action in actions.items()]
    _log(outcomes, "after startup")
    return outcomes
