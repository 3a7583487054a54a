"""Turns config.yaml's model_list into the routing policy's model catalog.

The tier of each group comes from `model_info.gateway_tier` (local, cloud or auto), never from its
name: `deepseek-r1:7b` is local although it contains "deepseek". Capabilities come from LiteLLM's
own `model_info` fields (CAPABILITY_FIELDS); a field that is absent means "not supported", so a
request is never sent to a model nobody said could serve it.
"""

from __future__ import annotations

from collections.abc import Mapping

from custom_router.policy import ModelEntry, Policy, Tier
from proxy_config.settings import RoutingSettings, SettingsError

OLLAMA_PREFIXES = ("ollama_chat/", "ollama/")
CAPABILITY_FIELDS = {"supports_function_calling": "tools", "supports_response_schema": "json_schema",
                     "supports_vision": "vision", "supports_reasoning": "thinking",
                     "supports_tool_choice": "tool_choice"}


def capabilities(info: Mapping[str, object]) -> frozenset[str]:
    return frozenset(cap for name, cap in CAPABILITY_FIELDS.items() if info.get(name) is True)


def model_entries(config: Mapping[str, object]) -> dict[str, ModelEntry]:
    entries: dict[str, ModelEntry] = {}
    for index, item in enumerate(config.get("model_list") or []):
        if not isinstance(item, dict) or not item.get("model_name"):
            raise SettingsError(f"model_list[{index}] needs a model_name")
        name = str(item["model_name"])
        params = item.get("litellm_params") or {}
        info = item.get("model_info") or {}
        tier = info.get("gateway_tier")
        if tier not in {t.value for t in Tier}:
            raise SettingsError(
                f"model_list[{index}] ({name}): model_info.gateway_tier must be local, cloud or auto, got {tier!r}"
            )
        backend = str(params.get("model", ""))
        for prefix in OLLAMA_PREFIXES:
            backend = backend.removeprefix(prefix)
        entries[name] = ModelEntry(
            name=name,
            tier=Tier(tier),
            backend_model=backend,
            context_window=int(info.get("max_input_tokens") or 8192),
            fallback=info.get("fallback"),
            capabilities=capabilities(info),
            max_output_tokens=int(info["max_output_tokens"]) if info.get("max_output_tokens") else None,
            mode="embedding" if info.get("mode") == "embedding" else "chat",
        )
    return entries


def build_policy(config: Mapping[str, object], routing: RoutingSettings) -> Policy:
    return Policy(
        models=model_entries(config),
        local_default=routing.local_default,
        cloud_default=routing.cloud_default,
        complexity_threshold=routing.complexity_threshold,
        complexity_unit=routing.complexity_unit,
        chars_per_token=routing.chars_per_token,
        output_reserve_tokens=routing.output_reserve_tokens,
        cloud_only_kinds=frozenset(routing.cloud_only_kinds),
        bytes_per_token=routing.bytes_per_token,
        local_max_wait_seconds=routing.local_max_wait_seconds,
        spill_named_local=routing.spill_named_local,
    )
