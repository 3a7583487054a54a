"""What the gateway believes about Ollama and DeepSeek, kept fresh off the request path.

A background task polls Ollama's `/api/tags` every `health_interval_seconds`; a connection
failure seen by any request marks Ollama down at once (`mark_local_down`), so no later
request pays for it. No request ever waits for a health call. The cloud tier is ready when
a DeepSeek key is configured. Polling errors are logged and never raised.
Cloud reachability is tracked passively for /health only (no polling of DeepSeek): a request's
connection failure marks it unreachable, the next success marks it reachable again. Every
change is published as the `gateway_backend_up{backend}` gauge.
When a configured local model is first seen installed (or its digest changes), the poll asks
Ollama's `/api/show` for its capabilities and context length and logs a warning for every way
they differ from config.yaml (custom_router.reported); a failed /api/show is logged, not retried
until the next change.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import replace

import httpx

from custom_router.policy import BackendState, ModelEntry, normalize_tag
from custom_router.reported import differences, parse_show

log = logging.getLogger("gateway.backends")


class BackendMonitor:
    def __init__(self, ollama_url: str, cloud_key_set: bool, interval: float = 5.0, timeout: float = 1.0,
                 local_models: Iterable[ModelEntry] = ()) -> None:
        self.ollama_url = ollama_url
        self.local_models = {normalize_tag(e.backend_model): e for e in local_models}
        self._shown: dict[str, str] = {}  # Ollama tag -> digest last compared
        self.interval = interval
        self.timeout = timeout
        cloud_problem = (None if cloud_key_set
                         else "DEEPSEEK_API_KEY is not set (set it in .env to enable the cloud tier)")
        # Down until the first poll, which start() runs before the first request is served.
        self.state = BackendState(ollama_up=False, local_problem="Ollama has not been polled yet",
                                  cloud_ready=cloud_key_set, cloud_problem=cloud_problem)
        self.checked_at = 0.0
        self.cloud_reachable = cloud_key_set
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        """Poll once now (so the first request sees real state), then keep polling."""
        if self._task is not None:
            return
        await self.refresh()
        _publish("deepseek", self.cloud_reachable)
        self._task = asyncio.create_task(self._loop(), name="gateway-ollama-monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.refresh()

    async def refresh(self) -> None:
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                response = await client.get(f"{self.ollama_url}/api/tags")
                response.raise_for_status()
                models = response.json().get("models") or []
                await self._compare(client, models)
        except Exception as exc:  # any failure means "unreachable"; never raise from the monitor
            self.mark_local_down(f"Ollama at {self.ollama_url} is unreachable ({_short(exc)}); "
                                 "start Ollama or fix OLLAMA_URL")
            return
        installed = frozenset(normalize_tag(str(m.get("name") or m.get("model")))
                              for m in models if isinstance(m, dict))
        if not self.state.ollama_up:
            log.info("Ollama at %s is up with %d models", self.ollama_url, len(installed))
        self.state = replace(self.state, ollama_up=True, installed=installed, local_problem=None)
        self.checked_at = time.time()
        _publish("ollama", True)

    async def _compare(self, client: httpx.AsyncClient, models: list) -> None:
        """Check newly installed configured models against what /api/show reports."""
        for model in models:
            tag = normalize_tag(str(model.get("name") or model.get("model"))) if isinstance(model, dict) else ""
            entry = self.local_models.get(tag)
            digest = str(model.get("digest", "")) if isinstance(model, dict) else ""
            if entry is None or self._shown.get(tag) == digest:
                continue
            self._shown[tag] = digest
            try:
                response = await client.post(f"{self.ollama_url}/api/show", json={"model": tag})
                response.raise_for_status()
                reported = parse_show(response.json())
            except Exception as exc:  # informational only
                log.warning("cannot read /api/show for %s (%s)", tag, _short(exc))
                continue
            for difference in differences(entry, reported):
                log.warning("model check: %s", difference)

    def mark_local_down(self, problem: str) -> None:
        if self.state.ollama_up:
            log.warning("local tier marked down: %s", problem)
        self.state = replace(self.state, ollama_up=False, local_problem=problem)
        self.checked_at = time.time()
        _publish("ollama", False)

    def mark_cloud_unreachable(self, problem: str) -> None:
        if self.cloud_reachable:
            log.warning("cloud tier unreachable: %s", problem)
            self.cloud_reachable = False
            _publish("deepseek", False)

    def mark_cloud_reachable(self) -> None:
        if not self.cloud_reachable:
            log.info("cloud tier reachable again")
            self.cloud_reachable = True
            _publish("deepseek", True)

    def mark_model_missing(self, tag: str) -> None:
        self.state = replace(self.state, installed=self.state.installed - {normalize_tag(tag)})


def health_report(ollama_up: bool, key_set: bool, cloud_reachable: bool, installed: frozenset[str]) -> tuple[int, dict]:
    """The original design's /health shape: 200 healthy|degraded, 503 unhealthy; no secrets."""
    ollama = "connected" if ollama_up else "unreachable"
    deepseek = "no_api_key" if not key_set else ("connected" if cloud_reachable else "unreachable")
    if ollama_up and deepseek == "connected":
        status = "healthy"
    elif ollama_up or deepseek == "connected":
        status = "degraded"
    else:
        status = "unhealthy"
    body = {"status": status, "ollama": ollama, "deepseek": deepseek, "models": sorted(installed) if ollama_up else []}
    return (503 if status == "unhealthy" else 200), body


def _publish(backend: str, up: bool) -> None:
    from hooks import metrics  # imported late: prometheus_client must see PROMETHEUS_MULTIPROC_DIR first

    metrics.set_backend_up(backend, up)


def _short(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) < 120 else text[:117] + "..."
