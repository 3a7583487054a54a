"""The process-wide objects the callbacks share: settings, policy and backend monitor.

Built once per worker from GATEWAY_CONFIG and the environment (see proxy_config.settings),
so callbacks never read os.environ themselves.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from custom_router.policy import Policy
from hooks.backends import BackendMonitor
from proxy_config.catalog import build_policy
from proxy_config.settings import Settings, load_settings, read_config


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    policy: Policy
    monitor: BackendMonitor

    def tier_of(self, model_group: str | None) -> str | None:
        entry = self.policy.models.get(model_group or "")
        return entry.tier.value if entry else None


def build_runtime(settings: Settings) -> Runtime:
    policy = build_policy(read_config(settings.config_path), settings.routing)
    monitor = BackendMonitor(
        settings.ollama_url,
        cloud_key_set=settings.deepseek_api_key is not None,
        interval=settings.routing.health_interval_seconds,
        timeout=settings.routing.health_timeout_seconds,
        local_models=[e for e in policy.models.values() if e.tier.value == "local"],
    )
    return Runtime(settings, policy, monitor)


def deployment_of(model_id: str | None) -> tuple[str, str] | None:
    """(model group, gateway tier) of the LiteLLM deployment that served a response.

    Runs several times a request; cheap because litellm_compat.tuning (`deployment-objects`) keeps
    one Deployment per model-list entry instead of LiteLLM building one on every lookup."""
    if not model_id:
        return None
    from litellm.proxy import proxy_server

    router = proxy_server.llm_router
    deployment = router.get_deployment(model_id=model_id) if router is not None else None
    if deployment is None:
        return None
    info = deployment.model_info
    tier = info.get("gateway_tier") if isinstance(info, dict) else getattr(info, "gateway_tier", None)
    return deployment.model_name, str(tier)


@functools.cache
def get_runtime() -> Runtime:
    return build_runtime(load_settings())
