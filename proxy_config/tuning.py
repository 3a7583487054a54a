"""Runtime shims that remove per-request work LiteLLM 1.108.7 does and this product does not use.

Found with py-spy and measured with `python -m bench` (docs/performance.md). `apply(litellm_app,
settings)` runs once per worker in create_app, before Starlette builds LiteLLM's middleware
stack and before LiteLLM's startup; `after_startup(settings)` runs when that startup is done.
Nothing in site-packages is edited: each shim rebinds one attribute of a LiteLLM module, class
or app object, and tests/proxy_config/test_tuning.py checks each target against the pinned
version, so an upgrade that renames one fails there loudly. At run time a shim that raises is
logged and skipped (fail open: the gateway works, only slower). One INFO line per worker says
what was applied. In DB mode (DATABASE_URL: LiteLLM virtual keys) the shims that would switch
off what those keys use are not applied (DB_MODE_OFF, and the DB-tied middlewares).

- `malloc-arenas`: cap glibc's malloc arenas at 2 (what MALLOC_ARENA_MAX=2 does): threads that
  allocate get arenas of their own and freed memory stays spread over them.
- `middlewares`: drop the ASGI middlewares of LiteLLM's app for features this product does not
  use (DROPPED_MIDDLEWARES says why each may go).
- `otel-seed`: LiteLLM's auth imports its OpenTelemetry fan-out on every request; without
  opentelemetry-sdk that import fails, and is retried (compiling a module) every time. When it
  fails at startup the step becomes a no-op, which is what it amounts to.
- `ollama-static-lookup`: `OllamaModelInfo._is_static_ollama_model` lowercases all ~4,300 keys
  of the cost map on every call, several times per request; keep the lowercased set instead.
- `route-checks`: LiteLLM's auth asks on every request whether the route is a management route,
  matching it against ~200 route patterns with regular expressions; the answer depends on the
  route string only, so it is memoized (LRU, 4,096 routes).
- `coordination-redis`: LiteLLM adopts REDIS_* variables as its own "coordination" Redis and
  pays round trips per request for its counters; REDIS_URL is for hooks.ratelimit.
- `deployment-usage`: the router rebuilds a deployment's model info twice per request only to
  find it has no tpm/rpm limit; remember that per deployment.
- `proxy-hooks`: do not register LiteLLM proxy hooks for LiteLLM keys, agents, sessions and
  caching (UNUSED_PROXY_HOOKS); the gateway's keys carry no LiteLLM limits or metadata.
- `deployment-objects`: `Router.get_deployment` validates a new pydantic `Deployment` from the
  model-list entry on every call, several times per request; keep the one built per entry
  (rebuilt when the entry is replaced). LiteLLM itself hands out shared Deployment objects
  when its model list holds them, so callers do not modify what they get. Not in DB mode,
  where entries can change in place.
- `free-deployment-cost`: a request served by a deployment whose config prices every token at 0
  (the shipped local models) costs 0; LiteLLM still prices it through the cost map and then
  runs a zero-cost diagnostic (another pricing lookup) up to twice per request. For those
  deployments the answer is 0 at once and the diagnostic is empty. Other deployments are priced
  by LiteLLM as before. The ledger's own costs (hooks.ledger) do not depend on this. Not in DB
  mode, where the admin UI can change a deployment's prices in place.
- `bridge-check`: `completion()` asks on every request whether the model must be bridged to the
  Responses API, looking its model info up in the cost map. For Ollama and DeepSeek models the
  answer depends only on the model name and the cost map (the rest of the check concerns
  OpenAI, Azure and xAI), so it is remembered per model for each version of the cost map.
- `litellm-info-logs` (after startup): LiteLLM logs three INFO lines per request; the gateway
  writes its own request line, so LiteLLM's loggers stay at WARNING unless debugging.
- `inline-completion` (after startup, in the serving loop): `litellm.acompletion` runs the
  synchronous `completion()` set-up in the loop's default thread pool; for the shipped providers
  it does no I/O, so InlineCompletionExecutor runs it inline and spares the thread hand-off.
"""

from __future__ import annotations

import concurrent.futures
import functools
import logging

from proxy_config import litellm_fixes

log = logging.getLogger("gateway.tuning")

LITELLM_LOGGERS = ("LiteLLM", "LiteLLM Proxy", "LiteLLM Router")

# (module, class) -> why this product can serve without it. `db` marks the ones kept in DB mode.
DROPPED_MIDDLEWARES: dict[tuple[str, str], tuple[str, bool]] = {
    ("litellm.proxy.lens.internal", "LensInternalMiddleware"):
        ("LiteLLM Lens internal identity header (x-lens-internal); not used here", False),
    ("litellm.proxy.middleware.request_size_limit_middleware", "RequestSizeLimitMiddleware"):
        ("enterprise-only; MAX_BODY_BYTES is enforced by proxy_config.errors", False),
    ("starlette.middleware.cors", "CORSMiddleware"):
        ("LiteLLM's allow-all CORS; proxy_config.cors owns CORS (CORS_ORIGINS)", False),
    ("litellm.proxy.telemetry.middleware", "TelemetryMiddleware"):
        ("LiteLLM usage telemetry; without a database it has no sink", True),
    ("litellm.proxy.middleware.billable_request_metrics_middleware", "BillableRequestMetricsMiddleware"):
        ("enterprise billing metrics and the DB request accumulator", True),
    ("litellm.proxy.middleware.budget_reservation_release_middleware", "BudgetReservationReleaseMiddleware"):
        ("releases budget reservations of LiteLLM virtual keys (DB mode)", True),
    ("litellm.proxy.middleware.redis_request_batch_middleware", "RedisRequestBatchMiddleware"):
        ("batches LiteLLM's own Redis counters, off with coordination-redis", True),
}


def _middleware_key(middleware: object) -> tuple[str, str]:
    cls = getattr(middleware, "cls", None)
    return (getattr(cls, "__module__", ""), getattr(cls, "__name__", ""))


def drop_middlewares(litellm_app, db_mode: bool) -> list[str]:
    """Remove the unused middlewares from `litellm_app.user_middleware`; the names removed."""
    if getattr(litellm_app, "middleware_stack", None) is not None:
        log.warning("tuning: LiteLLM's middleware stack is already built; middlewares left as they are")
        return []
    drop = {key for key, (_, needs_db) in DROPPED_MIDDLEWARES.items() if not (db_mode and needs_db)}
    kept = [m for m in litellm_app.user_middleware if _middleware_key(m) not in drop]
    dropped = [_middleware_key(m)[1] for m in litellm_app.user_middleware if _middleware_key(m) in drop]
    litellm_app.user_middleware = kept
    return dropped


def skip_failed_otel_seed() -> bool:
    """No-op LiteLLM's per-request OTel destination seeding when its import cannot succeed."""
    from litellm.proxy.auth import user_api_key_auth as auth_module

    if not callable(getattr(auth_module, "_seed_request_destinations", None)):
        log.warning("tuning: litellm user_api_key_auth._seed_request_destinations not found; otel-seed skipped")
        return False
    try:
        from litellm.integrations.otel.logger import fan_out_provider  # noqa: F401
        from litellm.integrations.otel.plumbing.context import set_request_destinations  # noqa: F401
    except ImportError:
        auth_module._seed_request_destinations = _no_destinations
        return True
    return False  # OTel is installed: keep LiteLLM's behaviour


def _no_destinations(user_api_key_dict, request=None) -> None:
    """What LiteLLM's seeding does when OpenTelemetry is not installed: nothing."""


def cache_ollama_static_lookup() -> bool:
    """Serve `_is_static_ollama_model` from a lowercased key set kept per cost-map version."""
    from litellm.llms.ollama.common_utils import OllamaModelInfo

    original = OllamaModelInfo.__dict__.get("_is_static_ollama_model")
    if not isinstance(original, staticmethod) or getattr(original.__func__, "_gateway_tuned", False):
        return False
    strip = OllamaModelInfo._strip_ollama_model_prefix
    cache: dict[str, object] = {"id": None, "size": -1, "keys": frozenset()}

    def is_static_ollama_model(model: str) -> bool:
        import litellm

        costs = litellm.model_cost
        if cache["id"] != id(costs) or cache["size"] != len(costs):
            cache.update(id=id(costs), size=len(costs), keys=frozenset(key.lower() for key in costs))
        keys = cache["keys"]
        stripped = strip(model)
        return any(name.lower() in keys for name in (model, stripped, "ollama/" + stripped, "ollama_chat/" + stripped))

    is_static_ollama_model._gateway_tuned = True  # type: ignore[attr-defined]
    OllamaModelInfo._is_static_ollama_model = staticmethod(is_static_ollama_model)
    return True


def no_env_coordination_redis() -> bool:
    """Stop LiteLLM from adopting REDIS_* variables as its coordination Redis."""
    from litellm.proxy.proxy_server import ProxyConfig

    if not callable(getattr(ProxyConfig, "_init_coordination_redis_env_fallback", None)):
        log.warning("tuning: ProxyConfig._init_coordination_redis_env_fallback not found; coordination-redis skipped")
        return False

    async def no_fallback(litellm_settings) -> None:
        return None

    ProxyConfig._init_coordination_redis_env_fallback = staticmethod(no_fallback)
    return True


# LiteLLM proxy hooks (litellm.proxy.hooks.PROXY_HOOKS) this product has no use for outside DB
# mode: they act on LiteLLM virtual keys, teams, agents, sessions and caching, none of which
# exist with the gateway's own keys (hooks.auth), which carry no LiteLLM limits or metadata.
UNUSED_PROXY_HOOKS: dict[str, str] = {
    "parallel_request_limiter": "rpm/tpm/parallel limits of LiteLLM keys; hooks.ratelimit limits ours",
    "cache_control_check": "per-key cache-control permissions; no response cache is configured",
    "litellm_skills": "skills injection for LiteLLM agents",
    "max_iterations_limiter": "per-session call caps of LiteLLM agents",
    "max_budget_per_session_limiter": "per-session budgets of LiteLLM agents",
    "sensitive_data_routing": "sticky routing after a guardrail match; no guardrails here",
    "prompt_cache_prediction": "prompt-cache hit prediction for the cache-aware router",
    "autorouter_baseline_cache": "baselines of LiteLLM's complexity auto-router",
}


def drop_unused_proxy_hooks() -> list[str]:
    """Remove UNUSED_PROXY_HOOKS from LiteLLM's registry before its startup instantiates them."""
    from litellm.proxy import hooks as proxy_hooks

    registry = getattr(proxy_hooks, "PROXY_HOOKS", None)
    if not isinstance(registry, dict):
        log.warning("tuning: litellm.proxy.hooks.PROXY_HOOKS not found; proxy-hooks skipped")
        return []
    dropped = [name for name in UNUSED_PROXY_HOOKS if name in registry]
    for name in dropped:
        del registry[name]
    return dropped


def skip_unlimited_deployment_usage() -> bool:
    """Skip the router's per-request TPM/RPM bookkeeping for deployments without any limit.

    Whether a deployment has a tpm/rpm/itpm/otpm limit depends on the deployment and the cost map
    only, so the answer is kept per deployment, recomputed when the router's model list or the
    cost map is replaced or changes size. Not in DB mode, where deployments change in place.
    """
    import litellm
    from litellm import router as router_module
    from litellm.router import Router

    original = Router.__dict__.get("_increment_deployment_usage")
    has_io_limits = getattr(router_module, "deployment_has_io_token_limits", None)
    if original is None or has_io_limits is None or getattr(original, "_gateway_tuned", False):
        return False

    def unlimited(router, deployment_id: str, model_group: str) -> bool:
        deployment = router.get_deployment(model_id=deployment_id)
        if deployment is None:
            return False
        info = router.get_router_model_info(deployment=deployment, received_model_name=model_group) or {}
        limits = (deployment.get("tpm"), deployment.get("rpm"), deployment.litellm_params.tpm,
                  deployment.litellm_params.rpm, info.get("tpm"), info.get("rpm"))
        return all(limit is None for limit in limits) and not has_io_limits(deployment.model_dump())

    async def _increment_deployment_usage(self, *, deployment_id, model_group, **kwargs):
        version = (id(self.model_list), len(self.model_list), id(litellm.model_cost), len(litellm.model_cost))
        known = self.__dict__.setdefault("_gateway_unlimited", {})
        key = (deployment_id, model_group)
        if known.get(key, (None,))[0] != version:
            known[key] = (version, unlimited(self, deployment_id, model_group))
        if known[key][1]:
            return None
        return await original(self, deployment_id=deployment_id, model_group=model_group, **kwargs)

    _increment_deployment_usage._gateway_tuned = True  # type: ignore[attr-defined]
    Router._increment_deployment_usage = _increment_deployment_usage
    return True


def cache_management_route_check(maxsize: int = 4096) -> bool:
    """Memoize `RouteChecks.is_management_route`, a pure function of the route string."""
    from litellm.proxy.auth.route_checks import RouteChecks

    original = RouteChecks.__dict__.get("is_management_route")
    if not isinstance(original, staticmethod) or hasattr(original.__func__, "cache_info"):
        return False
    RouteChecks.is_management_route = staticmethod(functools.lru_cache(maxsize=maxsize)(original.__func__))
    return True


def cache_deployment_objects() -> bool:
    """Build the `Deployment` of each model-list entry once, not on every `get_deployment`."""
    from litellm.router import Router

    original = Router.__dict__.get("get_deployment")
    if not callable(original) or getattr(original, "_gateway_tuned", False):
        return False

    def get_deployment(self, model_id: str):
        index = self.model_id_to_deployment_index_map.get(model_id)
        entry = self.model_list[index] if index is not None and index < len(self.model_list) else None
        if not isinstance(entry, dict):
            return original(self, model_id)
        built = self.__dict__.setdefault("_gateway_deployments", {})
        known = built.get(model_id)
        if known is None or known[0] is not entry:
            known = built[model_id] = (entry, original(self, model_id))
        return known[1]

    get_deployment._gateway_tuned = True  # type: ignore[attr-defined]
    Router.get_deployment = get_deployment
    return True


COST_FIELDS = ("input_cost_per_token", "output_cost_per_token")


def free_deployment_ids(model_list: list) -> frozenset[str]:
    """Ids of the deployments whose config sets input and output token prices to 0 and no other
    price above 0 (per second, per image, cache reads, ...), in model_info or litellm_params."""
    free = set()
    for deployment in model_list:
        info = deployment.get("model_info") or {}
        params = deployment.get("litellm_params") or {}
        prices = {k: v for source in (params, info) for k, v in source.items() if "cost_per" in k}
        if all(info.get(k) == 0 for k in COST_FIELDS) and not any(prices.values()) and info.get("id"):
            free.add(str(info["id"]))
    return frozenset(free)


def _is_free(model_id: str | None) -> bool:
    if model_id is None:
        return False
    from litellm.proxy import proxy_server

    router = proxy_server.llm_router
    if router is None:
        return False
    key = (id(router), len(router.model_list))
    if _free.get("key") != key:
        _free.update(key=key, ids=free_deployment_ids(router.model_list))
    return model_id in _free["ids"]


_free: dict = {}


def zero_cost_for_free_deployments() -> bool:
    """Answer 0 for deployments priced at 0, without the cost-map lookups and the diagnostic."""
    from litellm.litellm_core_utils.litellm_logging import Logging

    calculate = Logging.__dict__.get("response_cost_calculator")
    diagnose = Logging.__dict__.get("_record_zero_cost_diagnostic")
    if not callable(calculate) or not callable(diagnose) or getattr(calculate, "_gateway_tuned", False):
        return False

    def response_cost_calculator(self, result, cache_hit=None, litellm_model_name=None, router_model_id=None):
        hidden = getattr(result, "_hidden_params", None)
        model_id = router_model_id or (hidden.get("model_id") if isinstance(hidden, dict) else None)
        if _is_free(model_id or self.get_router_model_id()):
            self.model_call_details["zero_cost_diagnostic"] = None
            return 0.0
        return calculate(self, result, cache_hit=cache_hit, litellm_model_name=litellm_model_name,
                         router_model_id=router_model_id)

    def _record_zero_cost_diagnostic(self, result, response_cost, **kwargs):
        if response_cost == 0 and _is_free(kwargs.get("router_model_id") or self.get_router_model_id()):
            self.model_call_details["zero_cost_diagnostic"] = None
            return None
        return diagnose(self, result, response_cost, **kwargs)

    response_cost_calculator._gateway_tuned = True  # type: ignore[attr-defined]
    Logging.response_cost_calculator = response_cost_calculator
    Logging._record_zero_cost_diagnostic = _record_zero_cost_diagnostic
    return True


BRIDGE_CACHED_PROVIDERS = ("ollama", "ollama_chat", "deepseek")


def cache_bridge_check() -> bool:
    """Remember `responses_api_bridge_check` per (model, provider) for BRIDGE_CACHED_PROVIDERS."""
    import litellm
    import litellm.main

    original = getattr(litellm.main, "responses_api_bridge_check", None)
    if not callable(original) or getattr(original, "_gateway_tuned", False):
        return False
    answers: dict[tuple, tuple[dict, str]] = {}

    def responses_api_bridge_check(model, custom_llm_provider, web_search_options=None, tools=None,
                                   reasoning_effort=None, reasoning_summary=None, api_base=None):
        if custom_llm_provider not in BRIDGE_CACHED_PROVIDERS or model.startswith("responses/"):
            return original(model=model, custom_llm_provider=custom_llm_provider, web_search_options=web_search_options,
                            tools=tools, reasoning_effort=reasoning_effort, reasoning_summary=reasoning_summary,
                            api_base=api_base)
        key = (model, custom_llm_provider, id(litellm.model_cost), len(litellm.model_cost))
        if key not in answers:
            if len(answers) > 1024:
                answers.clear()
            answers[key] = original(model=model, custom_llm_provider=custom_llm_provider)
        info, name = answers[key]
        return dict(info), name  # callers may change their copy

    responses_api_bridge_check._gateway_tuned = True  # type: ignore[attr-defined]
    litellm.main.responses_api_bridge_check = responses_api_bridge_check
    return True


INLINE_PROVIDERS = ("ollama_chat/", "ollama/", "deepseek/")  # the providers this product ships with


class InlineCompletionExecutor(concurrent.futures.ThreadPoolExecutor):
    """The event loop's default executor, running LiteLLM's `completion()` set-up inline.

    For Ollama models with static model info and for DeepSeek that set-up returns a coroutine and
    does no I/O; the hop to a thread only costs wake-ups and GIL hand-offs. Anything else (other
    providers may refresh credentials over the network; LiteLLM looks unknown Ollama models up
    with a blocking `/api/show`) still goes to the thread pool.
    """

    def submit(self, fn, /, *args, **kwargs):
        if _inline_safe(fn):
            future: concurrent.futures.Future = concurrent.futures.Future()
            try:
                future.set_result(fn(*args, **kwargs))
            except Exception as exc:
                future.set_exception(exc)
            return future
        return super().submit(fn, *args, **kwargs)


def _inline_safe(fn) -> bool:
    """`partial(context.run, partial(litellm.main.completion, model=...))` for a shipped provider."""
    import litellm.main
    from litellm.llms.ollama.common_utils import OllamaModelInfo

    inner = fn.args[0] if isinstance(fn, functools.partial) and fn.args else None
    if not isinstance(inner, functools.partial) or inner.func is not litellm.main.completion:
        return False
    model = inner.keywords.get("model")
    if not isinstance(model, str) or not model.startswith(INLINE_PROVIDERS):
        return False
    return not model.startswith("ollama") or OllamaModelInfo._is_static_ollama_model(model)


def inline_completion_setup() -> bool:
    """Install InlineCompletionExecutor as the running loop's default executor."""
    import asyncio

    asyncio.get_running_loop().set_default_executor(InlineCompletionExecutor(thread_name_prefix="asyncio"))
    return True


M_ARENA_MAX = -8  # glibc's mallopt parameter number


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas (what MALLOC_ARENA_MAX=2 does, set from inside the process)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None or "libc" not in name:
        return False  # not glibc (musl has no arenas to cap)
    return ctypes.CDLL(name).mallopt(M_ARENA_MAX, arenas) == 1


SHIMS = ("malloc-arenas", "middlewares", "otel-seed", "ollama-static-lookup", "route-checks", "coordination-redis",
         "deployment-usage", "proxy-hooks", "deployment-objects", "free-deployment-cost", "bridge-check",
         "inline-thinking", "completion-text", "litellm-info-logs", "inline-completion")
# LiteLLM keys need these, or the admin UI can edit deployments (and their prices) in place
DB_MODE_OFF = frozenset({"coordination-redis", "deployment-usage", "proxy-hooks", "deployment-objects",
                         "free-deployment-cost"})


def apply(litellm_app, settings, skip: frozenset[str] = frozenset()) -> list[str]:
    """Apply the shims before LiteLLM's startup; returns what was applied (also logged once)."""
    db_mode = settings.database_url is not None
    shims = {
        "malloc-arenas": limit_malloc_arenas,
        "middlewares": lambda: drop_middlewares(litellm_app, db_mode),
        "otel-seed": skip_failed_otel_seed,
        "ollama-static-lookup": cache_ollama_static_lookup,
        "route-checks": cache_management_route_check,
        "coordination-redis": no_env_coordination_redis,
        "deployment-usage": skip_unlimited_deployment_usage,
        "proxy-hooks": drop_unused_proxy_hooks,
        "deployment-objects": cache_deployment_objects,
        "free-deployment-cost": zero_cost_for_free_deployments,
        "bridge-check": cache_bridge_check,
        "inline-thinking": litellm_fixes.split_inline_thinking,  # a correction, not speed (proxy_config.litellm_fixes)
        "completion-text": litellm_fixes.text_never_null,  # a correction too: completions streams end with a text
    }
    applied = []
    for name, shim in shims.items():
        if name in skip or (db_mode and name in DB_MODE_OFF):
            continue
        result = _safely(name, shim)
        if result:
            applied.append(f"{name}(-{','.join(result)})" if isinstance(result, list) else name)
    log.info("tuning: applied %s", " ".join(applied) or "nothing")
    return applied


def quiet_litellm_loggers(settings) -> bool:
    """Keep LiteLLM's loggers at WARNING (or the configured level, if higher) unless debugging."""
    if settings.debug or settings.log_level == "DEBUG":
        return False
    level = max(logging.WARNING, logging.getLevelName(settings.log_level))
    for name in LITELLM_LOGGERS:
        logging.getLogger(name).setLevel(level)
    return True


def after_startup(settings, skip: frozenset[str] = frozenset()) -> None:
    """Run in the serving event loop once LiteLLM's startup is complete (it sets its log levels there)."""
    if "litellm-info-logs" not in skip:
        _safely("litellm-info-logs", lambda: quiet_litellm_loggers(settings))
    if "inline-completion" not in skip:
        _safely("inline-completion", inline_completion_setup)


def _safely(name: str, shim):
    """The shim's result, or None when it raised (logged; LiteLLM's behaviour is kept)."""
    try:
        return shim()
    except Exception:  # a shim must never stop the gateway from starting
        log.warning("tuning: %s failed; LiteLLM's behaviour is kept", name, exc_info=True)
        return None
