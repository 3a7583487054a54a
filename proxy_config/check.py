"""`gateway check`: validate config.yaml and the environment before anything starts.

Returns a list of `Problem`s (errors stop `gateway serve`; warnings do not). Each message
names the offending entry and says how to fix it.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from custom_router.policy import Tier
from proxy_config.catalog import OLLAMA_PREFIXES, model_entries
from proxy_config.settings import Settings, SettingsError, read_config

BUILTIN_CALLBACKS = frozenset({"prometheus", "langfuse", "otel", "datadog", "s3", "sentry"})


@dataclass(frozen=True)
class Problem:
    level: str  # "error" | "warning"
    message: str


def _error(message: str) -> Problem:
    return Problem("error", message)


def check_config(settings: Settings, allow_weak_keys: bool = False) -> list[Problem]:
    try:
        config = read_config(settings.config_path)
        entries = model_entries(config)
    except SettingsError as exc:
        return [_error(str(exc))]
    problems = _check_tiers(config, entries, settings)
    problems += _check_fallbacks(config, entries)
    problems += _check_imports(config, settings.config_path)
    problems += _check_environment(settings, allow_weak_keys)
    problems += _check_keys(config, settings)
    return problems


def _check_tiers(config: dict, entries: dict, settings: Settings) -> list[Problem]:
    problems = []
    for item in config.get("model_list") or []:
        name, model = item["model_name"], str((item.get("litellm_params") or {}).get("model", ""))
        is_ollama = model.startswith(OLLAMA_PREFIXES)
        if entries[name].tier in (Tier.LOCAL, Tier.AUTO) and not is_ollama:
            problems.append(_error(f"model {name!r} is tier {entries[name].tier.value} but litellm_params.model "
                                   f"{model!r} is not ollama_chat/<tag>"))
        if entries[name].tier is Tier.CLOUD and is_ollama:
            problems.append(_error(f"model {name!r} is tier cloud but points at Ollama ({model}); "
                                   "set model_info.gateway_tier: local"))
    routing = settings.routing
    for label, name, tier in (("local_default", routing.local_default, Tier.LOCAL),
                              ("cloud_default", routing.cloud_default, Tier.CLOUD)):
        if name not in entries:
            problems.append(_error(f"gateway_settings.{label} names {name!r}, which is not a model_name in model_list"))
        elif entries[name].tier is not tier:
            problems.append(_error(f"gateway_settings.{label} names {name!r}, which is tier "
                                   f"{entries[name].tier.value}, not {tier.value}"))
    if not any(e.tier is Tier.AUTO for e in entries.values()):
        problems.append(Problem("warning", "no model group has tier auto; clients cannot ask the gateway to choose"))
    return problems


def _check_fallbacks(config: dict, entries: dict) -> list[Problem]:
    problems = []
    for entry in entries.values():
        if entry.fallback is None:
            continue
        target = entries.get(entry.fallback)
        if target is None:
            problems.append(_error(f"model {entry.name!r}: model_info.fallback names unknown model {entry.fallback!r}; "
                                   f"use one of {sorted(entries)}"))
        elif target.tier is entry.tier or target.tier is Tier.AUTO:
            problems.append(_error(f"model {entry.name!r}: model_info.fallback {entry.fallback!r} "
                                   "must be in the other tier"))
    router = config.get("router_settings") or {}
    for key in ("fallbacks", "context_window_fallbacks", "content_policy_fallbacks"):
        for rule in router.get(key) or []:
            for group, targets in (rule.items() if isinstance(rule, dict) else []):
                for name in [group, *(targets if isinstance(targets, list) else [targets])]:
                    if name not in entries:
                        problems.append(_error(f"router_settings.{key}: {name!r} is not a model_name in model_list"))
    for name in router.get("default_fallbacks") or []:
        if name not in entries:
            problems.append(_error(f"router_settings.default_fallbacks: {name!r} is not a model_name in model_list"))
    return problems


def _importable(path: str, config_path: Path) -> str | None:
    """None when `pkg.module.attr` resolves the way LiteLLM resolves it, else why not."""
    module_name, _, attr = path.rpartition(".")
    if not module_name:
        return "it is not a dotted path module.attribute"
    local_file = config_path.resolve().parent.joinpath(*module_name.split(".")).with_suffix(".py")
    try:
        if local_file.exists():
            spec = importlib.util.spec_from_file_location(module_name, local_file)
            if spec is None or spec.loader is None:
                return f"{local_file} cannot be loaded as a module"
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except Exception as exc:
        return f"import failed: {type(exc).__name__}: {exc}"
    return None if hasattr(module, attr) else f"module {module_name} has no attribute {attr!r}"


def _check_imports(config: dict, config_path: Path) -> list[Problem]:
    litellm_settings = config.get("litellm_settings") or {}
    paths = []
    for key in ("callbacks", "success_callback", "failure_callback"):
        paths += [(key, cb) for cb in litellm_settings.get(key) or []
                  if isinstance(cb, str) and cb not in BUILTIN_CALLBACKS]
    custom_auth = (config.get("general_settings") or {}).get("custom_auth")
    if custom_auth:
        paths.append(("general_settings.custom_auth", custom_auth))
    problems = []
    for key, path in paths:
        why = _importable(path, config_path)
        if why:
            where = f"litellm_settings.{key}" if "." not in key else key
            problems.append(_error(f"{where}: {path!r} cannot be loaded ({why})"))
    return problems


def _check_environment(settings: Settings, allow_weak_keys: bool = False) -> list[Problem]:
    from proxy_config.weak_keys import weak_reason

    problems = []
    if settings.master_key is None:
        problems.append(_error(
            "LITELLM_MASTER_KEY is not set; the gateway needs an admin key. "
            "Create one: echo \"LITELLM_MASTER_KEY=sk-$(openssl rand -hex 32)\" >> .env"
        ))
    elif (why := weak_reason(settings.master_key.get_secret_value(), "LITELLM_MASTER_KEY")) is not None:
        problems.append(Problem("warning" if allow_weak_keys else "error",
                                why + ("" if allow_weak_keys else " (or pass --allow-weak-keys for a local demo)")))
    if settings.deepseek_api_key is None:
        problems.append(Problem("warning",
                                "DEEPSEEK_API_KEY is not set: the cloud tier is off and complex requests stay local"))
    if settings.routing.response_cache_ttl > 0 and settings.redis_url is None:
        problems.append(Problem("warning", "RESPONSE_CACHE_TTL is set but REDIS_URL is not: the response cache "
                                "lives in Redis, so it stays off; set REDIS_URL (docs/costs.md)"))
    return problems


def _check_keys(config: dict, settings: Settings) -> list[Problem]:
    """Client keys, shared limits and DB mode (issue 3: proxy_config.keys, proxy_config.dbmode)."""
    from proxy_config import dbmode
    from proxy_config.keys import load_keys

    try:
        table = load_keys(settings)
    except SettingsError as exc:
        return [_error(str(exc))]
    problems = []
    if table.master_digest in table.keys:
        problems.append(_error("a client key (API_KEYS or KEYS_FILE) equals LITELLM_MASTER_KEY; "
                               "give clients their own keys"))
    if settings.db_mode:
        why = dbmode.prisma_problem()
        if why is not None:
            problems.append(_error(dbmode.refusal(why)))
        if settings.ui_password is None:
            problems.append(Problem("warning",
                                    "UI_PASSWORD is not set: the admin UI (/ui) takes the master key as password"))
        return problems
    if table.keys and (config.get("general_settings") or {}).get("custom_auth") != "hooks.auth.user_api_key_auth":
        problems.append(_error("client keys are set but config.yaml general_settings.custom_auth is not "
                               "hooks.auth.user_api_key_auth, so LiteLLM would reject them; restore that line"))
    if table.keys and settings.workers > 1 and settings.redis_url is None:
        problems.append(_error(f"{settings.workers} workers without Redis cannot share per-key rate limits "
                               "(each worker would admit the full limit); set REDIS_URL (or REDIS_HOST/REDIS_PORT) "
                               "or use --workers 1"))
    if settings.allow_query_api_key:
        problems.append(Problem("warning", "ALLOW_QUERY_API_KEY is on: keys sent as ?api_key= end up in the "
                                           "access logs of any proxy in front of the gateway"))
    return problems
