"""litellm_compat.tuning against the installed LiteLLM: each shim keeps LiteLLM's behaviour while
skipping its work, and passes a parameter it does not know on to LiteLLM. Whether each target still
exists is tests/architecture/test_litellm_compat.py. Every global a test changes is restored.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import re
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from litellm_compat import shims, tuning


@pytest.fixture(scope="module")
def litellm_proxy():
    """LiteLLM's proxy module, imported with the bundled cost map (no network at import)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        from litellm.proxy import proxy_server

        yield proxy_server


def test_every_shim_holds_on_the_installed_litellm():
    """Not the version: what the shims need. An upgrade that breaks one names it here."""
    assert {o.name: o.detail for o in shims.check_all() if not o.applied} == {}


# --- middlewares ---------------------------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(tuning.DROPPED_MIDDLEWARES))
def test_every_dropped_middleware_is_added_by_litellms_app(litellm_proxy, key):
    module, name = key
    cls = getattr(__import__(module, fromlist=[name]), name)
    assert cls.__name__ == name
    source = Path(inspect.getsourcefile(litellm_proxy)).read_text()
    assert re.search(rf"app\.add_middleware\(\s*{name}\b", source), f"LiteLLM no longer adds {name}"


def _fake_app(*classes):
    from starlette.middleware import Middleware

    return SimpleNamespace(middleware_stack=None, user_middleware=[Middleware(cls) for cls in classes])


def _classes(*keys):
    return [getattr(__import__(module, fromlist=[name]), name) for module, name in keys]


def test_drop_middlewares_removes_only_the_listed_ones_and_keeps_the_order():
    from litellm.proxy.middleware.gzip_middleware import GZipBufferedResponseMiddleware
    from litellm.proxy.middleware.security_headers_middleware import SecurityHeadersMiddleware

    dropped = _classes(*tuning.DROPPED_MIDDLEWARES)
    app = _fake_app(SecurityHeadersMiddleware, *dropped, GZipBufferedResponseMiddleware)
    names = tuning.drop_middlewares(app, db_mode=False)
    assert [m.cls for m in app.user_middleware] == [SecurityHeadersMiddleware, GZipBufferedResponseMiddleware]
    assert sorted(names) == sorted(name for _, name in tuning.DROPPED_MIDDLEWARES)


def test_drop_middlewares_keeps_the_database_features_in_db_mode():
    app = _fake_app(*_classes(*tuning.DROPPED_MIDDLEWARES))
    tuning.drop_middlewares(app, db_mode=True)
    kept = {m.cls.__name__ for m in app.user_middleware}
    assert kept == {name for (_, name), (_, db) in tuning.DROPPED_MIDDLEWARES.items() if db}
    assert kept >= {"BillableRequestMetricsMiddleware", "BudgetReservationReleaseMiddleware"}


def test_drop_middlewares_leaves_a_built_stack_alone():
    app = _fake_app(*_classes(*tuning.DROPPED_MIDDLEWARES))
    app.middleware_stack = object()
    assert tuning.drop_middlewares(app, db_mode=False) == []
    assert len(app.user_middleware) == len(tuning.DROPPED_MIDDLEWARES)


# --- per-request work in LiteLLM -----------------------------------------------------------------


def test_otel_seed_cannot_import_here_so_the_noop_is_what_litellm_does(litellm_proxy, monkeypatch):
    from litellm.proxy.auth import user_api_key_auth as auth_module

    with pytest.raises(ImportError):
        import litellm.integrations.otel.logger  # noqa: F401  (opentelemetry-sdk is not installed)
    original = auth_module._seed_request_destinations
    assert original(SimpleNamespace(), None) is None  # LiteLLM's own version swallows the ImportError
    monkeypatch.setattr(auth_module, "_seed_request_destinations", original)
    assert tuning.skip_failed_otel_seed() is True
    assert auth_module._seed_request_destinations is tuning._no_destinations


def test_cached_ollama_lookup_answers_like_litellms_and_sees_new_models(litellm_proxy, monkeypatch):
    import litellm
    from litellm.llms.ollama.common_utils import OllamaModelInfo

    original = OllamaModelInfo.__dict__["_is_static_ollama_model"]
    monkeypatch.setattr(OllamaModelInfo, "_is_static_ollama_model", original)
    monkeypatch.setattr(litellm, "model_cost", {**litellm.model_cost, "ollama/Llama2": {"mode": "chat"}})
    names = ["ollama/llama2", "ollama_chat/LLAMA2", "llama2", "ollama_chat/qwen9:99b", "gpt-4o", "ollama_chat/gateway-test:1b"]
    expected = [original.__func__(name) for name in names]
    assert expected == [True, True, True, False, True, False]
    assert tuning.cache_ollama_static_lookup() is True
    assert [OllamaModelInfo._is_static_ollama_model(name) for name in names] == expected
    litellm.model_cost["gateway-test:1b"] = {"mode": "chat"}  # what register_model does at router start
    assert OllamaModelInfo._is_static_ollama_model("ollama_chat/gateway-test:1b") is True
    assert tuning.cache_ollama_static_lookup() is False  # applying twice is a no-op


def test_memoized_management_route_check_answers_like_litellms(litellm_proxy, monkeypatch):
    from litellm.proxy.auth.route_checks import RouteChecks

    original = RouteChecks.__dict__["is_management_route"]
    monkeypatch.setattr(RouteChecks, "is_management_route", original)
    routes = ["/v1/chat/completions", "/chat/completions", "/key/generate", "/key/sk-123/regenerate",
              "/team/new", "/health", "/v1/models", "/user/info"]
    expected = [original.__func__(route) for route in routes]
    assert expected[:4] == [False, False, True, True]
    assert tuning.cache_management_route_check() is True
    assert [RouteChecks.is_management_route(route) for route in routes] == expected
    assert RouteChecks.is_management_route.cache_info().hits == 0
    assert RouteChecks.is_management_route("/v1/chat/completions") is False
    assert RouteChecks.is_management_route.cache_info().hits == 1
    assert tuning.cache_management_route_check() is False  # applying twice is a no-op


def test_coordination_redis_env_fallback_exists_and_is_turned_off(litellm_proxy, monkeypatch):
    config_cls = litellm_proxy.ProxyConfig
    original = config_cls.__dict__["_init_coordination_redis_env_fallback"]
    assert inspect.iscoroutinefunction(original.__func__)
    assert "REDIS" in inspect.getsource(original.__func__)
    monkeypatch.setattr(config_cls, "_init_coordination_redis_env_fallback", original)
    assert tuning.no_env_coordination_redis() is True
    assert asyncio.run(config_cls._init_coordination_redis_env_fallback({})) is None


def test_every_unused_proxy_hook_is_registered_by_litellm(litellm_proxy, monkeypatch):
    from litellm.proxy import hooks as proxy_hooks

    assert set(tuning.UNUSED_PROXY_HOOKS) <= set(proxy_hooks.PROXY_HOOKS)
    for name, hook in list(proxy_hooks.PROXY_HOOKS.items()):
        monkeypatch.setitem(proxy_hooks.PROXY_HOOKS, name, hook)
    assert sorted(tuning.drop_unused_proxy_hooks()) == sorted(tuning.UNUSED_PROXY_HOOKS)
    assert "responses_id_security" in proxy_hooks.PROXY_HOOKS
    assert not set(tuning.UNUSED_PROXY_HOOKS) & set(proxy_hooks.PROXY_HOOKS)


def _router():
    from litellm import Router

    return Router(model_list=[
        {"model_name": "free", "litellm_params": {"model": "ollama_chat/qwen2.5:7b", "api_base": "http://127.0.0.1:9"},
         "model_info": {"id": "free-1", "input_cost_per_token": 0, "output_cost_per_token": 0}},
        {"model_name": "capped", "litellm_params": {"model": "ollama_chat/qwen2.5:7b", "api_base": "http://127.0.0.1:9",
                                                    "rpm": 60}, "model_info": {"id": "capped-1"}},
    ])


@pytest.mark.filterwarnings("ignore:Item .* is using the `ReadOnly` qualifier:UserWarning")  # pydantic on LiteLLM's types
def test_deployment_usage_is_skipped_only_for_deployments_without_limits(litellm_proxy, monkeypatch):
    from litellm.router import Router

    monkeypatch.setattr(Router, "_increment_deployment_usage", Router.__dict__["_increment_deployment_usage"])
    calls = dict(deployment_name=None, total_tokens=21, rpm_increment=1, parent_otel_span=None)

    async def both(router):
        return (await router._increment_deployment_usage(deployment_id="free-1", model_group="free", **calls),
                await router._increment_deployment_usage(deployment_id="capped-1", model_group="capped", **calls))

    untuned = asyncio.run(both(_router()))
    assert untuned[0] is None and isinstance(untuned[1], str)
    assert tuning.skip_unlimited_deployment_usage() is True
    router = _router()
    assert asyncio.run(both(router)) == untuned
    assert router._gateway_unlimited[("free-1", "free")][1] is True
    assert router._gateway_unlimited[("capped-1", "capped")][1] is False


def test_litellm_still_hands_completion_setup_to_the_default_executor(litellm_proxy):
    import litellm.main

    source = inspect.getsource(litellm.main.acompletion)
    assert "partial(completion, **completion_kwargs, **kwargs)" in source
    assert "partial(ctx.run, func)" in source
    assert "run_in_executor(None, func_with_context)" in source


def test_inline_executor_runs_only_safe_completion_setups_inline(litellm_proxy, monkeypatch):
    import litellm.main

    def fake_completion(**kwargs):
        return threading.get_ident(), kwargs["model"]

    def setup(model):
        return functools.partial(contextvars.copy_context().run, functools.partial(litellm.main.completion, model=model))

    monkeypatch.setattr(litellm.main, "completion", fake_completion)
    monkeypatch.setitem(litellm.model_cost, "gateway-static:1b", {"mode": "chat"})
    here = threading.get_ident()
    executor = tuning.InlineCompletionExecutor(max_workers=1)
    try:
        future = executor.submit(setup("ollama_chat/gateway-static:1b"))
        assert future.done() and future.result() == (here, "ollama_chat/gateway-static:1b")
        assert executor.submit(setup("deepseek/deepseek-chat")).result()[0] == here
        # LiteLLM would call Ollama's /api/show synchronously for an unknown model: keep it off the loop
        assert executor.submit(setup("ollama_chat/gateway-unknown:9b")).result(timeout=10)[0] != here
        assert executor.submit(setup("vertex_ai/gemini-2.5-pro")).result(timeout=10)[0] != here
        assert executor.submit(threading.get_ident).result(timeout=10) != here
        monkeypatch.setattr(litellm.main, "completion", lambda **kw: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            executor.submit(setup("deepseek/deepseek-chat")).result()
    finally:
        executor.shutdown()


@pytest.fixture
def litellm_log_levels():
    saved = {name: logging.getLogger(name).level for name in tuning.LITELLM_LOGGERS}
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


def test_after_startup_quiets_litellm_info_logs_but_not_debug(litellm_log_levels):
    for name in tuning.LITELLM_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO)
    assert tuning.quiet_litellm_loggers(SimpleNamespace(debug=False, log_level="INFO")) is True
    assert {logging.getLogger(n).level for n in tuning.LITELLM_LOGGERS} == {logging.WARNING}
    assert tuning.quiet_litellm_loggers(SimpleNamespace(debug=False, log_level="ERROR")) is True
    assert {logging.getLogger(n).level for n in tuning.LITELLM_LOGGERS} == {logging.ERROR}
    for name in tuning.LITELLM_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)
    assert tuning.quiet_litellm_loggers(SimpleNamespace(debug=False, log_level="DEBUG")) is False
    assert tuning.quiet_litellm_loggers(SimpleNamespace(debug=True, log_level="INFO")) is False
    assert {logging.getLogger(n).level for n in tuning.LITELLM_LOGGERS} == {logging.DEBUG}


def test_inline_executor_becomes_the_running_loops_default():
    async def install():
        assert tuning.inline_completion_setup() is True
        return await asyncio.get_running_loop().run_in_executor(None, threading.get_ident)

    assert asyncio.run(install()) != threading.get_ident()  # anything but completion() still runs in a thread


def test_malloc_arenas_are_capped_through_glibc():
    import ctypes.util

    assert "libc" in ctypes.util.find_library("c")
    assert tuning.limit_malloc_arenas(2) is True


def _settings(database_url=None):
    return SimpleNamespace(database_url=database_url, db_mode=database_url is not None, debug=False, log_level="INFO")


def _applied(outcomes):
    return [(o.name, o.detail) for o in outcomes if o.applied]


def test_apply_reports_what_it_applied_and_skips_db_features_in_db_mode(caplog):
    names = frozenset(shim.name for shim in shims.SHIMS)
    app = _fake_app(*_classes(*tuning.DROPPED_MIDDLEWARES))
    only_middlewares = names - {"middlewares"}
    with caplog.at_level(logging.INFO, logger="gateway.tuning"):
        outcomes = shims.apply(app, _settings(), skip=only_middlewares)
    assert _applied(outcomes) == [("middlewares", "-" + ",".join(name for _, name in tuning.DROPPED_MIDDLEWARES))]
    assert len(outcomes) == 13 and {o.detail for o in outcomes if not o.applied} == {"skipped on request"}
    assert "litellm_compat before startup: applied middlewares(-" in caplog.text
    app = _fake_app(*_classes(*tuning.DROPPED_MIDDLEWARES))
    outcomes = shims.apply(app, _settings("postgresql://gateway@db/gateway"), skip=only_middlewares - shims.DB_MODE_OFF)
    assert _applied(outcomes) == [
        ("middlewares", "-" + ",".join(n for (_, n), (_, db) in tuning.DROPPED_MIDDLEWARES.items() if not db))]
    assert {o.name for o in outcomes if o.detail.startswith("not in DB mode")} == shims.DB_MODE_OFF
    assert _applied(shims.apply(_fake_app(), _settings(), skip=names)) == []


def test_a_shim_whose_target_changed_is_skipped_with_a_warning_naming_it(monkeypatch, caplog):
    moved = shims.Shim("route-checks", "memoize", (("litellm.proxy.auth.route_checks:RouteChecks.is_gone", ("route",)),))
    monkeypatch.setitem(shims.BY_NAME, "route-checks", moved)
    called = []
    with caplog.at_level(logging.WARNING, logger="gateway.tuning"):
        outcome = shims._run(moved, lambda: called.append(1) or True, frozenset(), db_mode=False)
    assert called == [] and outcome.applied is False
    assert outcome.detail == "target changed: litellm.proxy.auth.route_checks:RouteChecks.is_gone does not exist"
    assert "route-checks skipped, its target changed" in caplog.text


def test_a_target_that_lost_a_parameter_does_not_hold_and_a_new_parameter_is_fine():
    def before(model, custom_llm_provider): ...
    def renamed(model_name, custom_llm_provider): ...
    def grown(model, custom_llm_provider, new_flag=None): ...

    for fn in (before, renamed, grown):
        setattr(tuning, "_probe", fn)
        try:
            problem = shims.target_problem("litellm_compat.tuning:_probe", ("model", "custom_llm_provider"))
        finally:
            delattr(tuning, "_probe")
        assert problem == (None if fn is not renamed else "litellm_compat.tuning:_probe has no parameter model")


def test_a_shim_that_raises_is_logged_and_litellm_behaviour_kept(caplog):
    def boom():
        raise RuntimeError("x")

    with caplog.at_level(logging.WARNING, logger="gateway.tuning"):
        outcome = shims._run(shims.BY_NAME["malloc-arenas"], boom, frozenset(), db_mode=False)
    assert (outcome.applied, outcome.detail) == (False, "failed: RuntimeError")
    assert "malloc-arenas failed while applying" in caplog.text


@pytest.mark.filterwarnings("ignore:Item .* is using the `ReadOnly` qualifier:UserWarning")  # pydantic on LiteLLM's types
def test_free_deployments_cost_zero_without_lookups_and_priced_ones_keep_litellms_price(litellm_proxy, monkeypatch):
    from litellm.litellm_core_utils.litellm_logging import Logging
    from litellm.router import Router

    for name in ("response_cost_calculator", "_record_zero_cost_diagnostic"):
        monkeypatch.setattr(Logging, name, Logging.__dict__[name])  # restored after the test
    lookups = []
    original = Logging.__dict__["_zero_cost_finding"]
    monkeypatch.setattr(Logging, "_zero_cost_finding", lambda self, result, cost, **k: lookups.append(cost) or original(self, result, cost, **k))

    def router():
        return Router(model_list=[
            {"model_name": "free", "litellm_params": {"model": "ollama_chat/qwen2.5:7b", "api_base": "http://127.0.0.1:9"},
             "model_info": {"id": "free-1", "input_cost_per_token": 0, "output_cost_per_token": 0}},
            {"model_name": "priced", "litellm_params": {"model": "deepseek/deepseek-chat", "api_key": "sk-test"},
             "model_info": {"id": "priced-1", "input_cost_per_token": 2.8e-7, "output_cost_per_token": 4.2e-7}},
        ])

    async def costs():
        router_ = router()
        monkeypatch.setattr(litellm_proxy, "llm_router", router_)
        out = []
        for model in ("free", "priced"):
            response = await router_.acompletion(model=model, messages=[{"role": "user", "content": "hi"}],
                                                 mock_response="hello there")
            out.append((response._hidden_params["model_id"], response._hidden_params["response_cost"]))
        return out

    untuned = asyncio.run(costs())
    assert untuned[0] == ("free-1", 0.0) and untuned[1][1] == pytest.approx(1.12e-05)
    assert 0.0 in lookups, "LiteLLM no longer diagnoses zero costs: the shim has nothing to skip"
    assert tuning.zero_cost_for_free_deployments() is True
    lookups.clear()
    assert asyncio.run(costs()) == untuned
    assert lookups and 0.0 not in lookups  # only the priced deployment's (non-zero) cost was looked at
    assert tuning.free_deployment_ids([{"model_info": {"id": "a", "input_cost_per_token": 0, "output_cost_per_token": 0,
                                                       "input_cost_per_second": 0.01}}]) == frozenset()


def test_bridge_check_is_remembered_for_ollama_and_deepseek_and_answers_as_litellm_does(litellm_proxy, monkeypatch):
    import litellm.main

    original = litellm.main.responses_api_bridge_check
    monkeypatch.setattr(litellm.main, "responses_api_bridge_check", original)  # restored after the test
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    cases = [dict(model="qwen2.5:7b", custom_llm_provider="ollama_chat"),
             dict(model="deepseek-chat", custom_llm_provider="deepseek", tools=tools, reasoning_effort="high"),
             dict(model="deepseek-reasoner", custom_llm_provider="deepseek"),
             dict(model="gpt-5.4", custom_llm_provider="openai", tools=tools, reasoning_effort="high"),
             dict(model="responses/qwen2.5:7b", custom_llm_provider="ollama_chat")]
    expected = [original(**case) for case in cases]
    assert expected[3][0].get("mode") == "responses"  # the check still bridges what it should
    calls = []
    monkeypatch.setattr(litellm.main, "responses_api_bridge_check", lambda **kw: calls.append(kw) or original(**kw))
    assert tuning.cache_bridge_check() is True
    assert [litellm.main.responses_api_bridge_check(**case) for case in cases * 2] == expected * 2
    cached = [c for c in calls if c["custom_llm_provider"] in tuning.BRIDGE_CACHED_PROVIDERS
              and not c["model"].startswith("responses/")]
    assert len(cached) == 3 and len(calls) == 3 + 2 * 2  # 3 cached models once each; openai and responses/ every time


@pytest.mark.filterwarnings("ignore:Item .* is using the `ReadOnly` qualifier:UserWarning")  # pydantic on LiteLLM's types
def test_deployment_objects_are_built_once_per_model_list_entry(litellm_proxy, monkeypatch):
    from litellm.router import Router

    monkeypatch.setattr(Router, "get_deployment", Router.__dict__["get_deployment"])  # restored after the test
    untuned = _router()
    expected = untuned.get_deployment(model_id="free-1")
    assert untuned.get_deployment(model_id="free-1") is not expected  # LiteLLM builds a new one each time
    assert tuning.cache_deployment_objects() is True
    router = _router()
    first = router.get_deployment(model_id="free-1")
    assert first.model_dump() == expected.model_dump()
    assert router.get_deployment(model_id="free-1") is first
    assert router.get_deployment(model_id="nope") is None
    index = router.model_id_to_deployment_index_map["free-1"]
    router.model_list[index] = {**router.model_list[index], "model_name": "renamed"}  # an entry replaced: rebuilt
    assert router.get_deployment(model_id="free-1").model_name == "renamed"
