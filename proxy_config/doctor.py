"""`gateway doctor`: tell a newcomer what is reachable and what to fix.

Each finding is `{"what", "ok", "detail"}`; details say what to do when something is wrong.
Network checks use short timeouts and never raise.
"""

from __future__ import annotations

import httpx

from custom_router.policy import ModelEntry, Tier, normalize_tag
from custom_router.reported import differences, parse_show
from proxy_config.catalog import model_entries
from proxy_config.check import check_config
from proxy_config.settings import Settings, read_config

TIMEOUT = 3.0


def finding(what: str, ok: bool, detail: str) -> dict:
    return {"what": what, "ok": ok, "detail": detail}


def diagnose(settings: Settings) -> list[dict]:
    errors = [p.message for p in check_config(settings) if p.level == "error"]
    findings = [finding("config", not errors, "; ".join(errors) or f"{settings.config_path} is valid")]
    findings += _ollama(settings)
    findings.append(_deepseek(settings))
    return findings


def _ollama(settings: Settings) -> list[dict]:
    url = settings.ollama_url
    try:
        version = httpx.get(f"{url}/api/version", timeout=TIMEOUT).json().get("version", "?")
        tags = httpx.get(f"{url}/api/tags", timeout=TIMEOUT).json().get("models") or []
    except (httpx.HTTPError, ValueError) as exc:
        return [finding("ollama", False, f"cannot reach Ollama at {url} ({type(exc).__name__}); "
                        "start it (systemctl start ollama) or set OLLAMA_URL in .env")]
    installed = {normalize_tag(str(m.get("name"))) for m in tags if isinstance(m, dict)}
    try:
        placement = gpu_report(httpx.get(f"{url}/api/ps", timeout=TIMEOUT).json())
    except (httpx.HTTPError, ValueError):
        placement = "which models run on the GPU is unknown (/api/ps did not answer)"
    results = [finding("ollama", True, f"Ollama {version} at {url}, {len(installed)} models installed; {placement}")]
    entries = model_entries(read_config(settings.config_path))
    for entry in entries.values():
        if entry.tier is not Tier.LOCAL:
            continue
        pull = f"`gateway models pull {entry.backend_model}`"
        if normalize_tag(entry.backend_model) in installed:
            results.append(_compare(url, entry))
        elif entry.name == settings.routing.local_default:  # `auto` needs it: a real problem
            results.append(finding(f"model {entry.name}", False,
                                   f"not installed but it is the local default: run {pull} or set "
                                   "LOCAL_DEFAULT_MODEL to an installed model (requests go to the cloud meanwhile)"))
        else:  # optional: a host pulls what fits its RAM
            results.append(finding(f"model {entry.name}", True,
                                   f"not installed (requests for it go to the cloud); to serve it locally: {pull}"))
    return results


def _compare(url: str, entry: ModelEntry) -> dict:
    """An installed model: what Ollama reports (capabilities, context length) next to config.yaml."""
    what = f"model {entry.name}"
    try:
        response = httpx.post(f"{url}/api/show", json={"model": normalize_tag(entry.backend_model)}, timeout=TIMEOUT)
        response.raise_for_status()
        reported = parse_show(response.json())
    except (httpx.HTTPError, ValueError) as exc:
        return finding(what, False,
                       f"installed, but /api/show failed ({type(exc).__name__}); its capabilities are unchecked")
    shown = (f"installed; Ollama reports [{', '.join(sorted(reported.capabilities)) or 'completion only'}], "
             f"context {reported.context_length}; config.yaml has [{', '.join(sorted(entry.capabilities))}], "
             f"window {entry.context_window}")
    problems = differences(entry, reported)
    return finding(what, not problems, shown + "".join(f"; WARNING: {p}" for p in problems))


def gpu_report(ps: object) -> str:
    """Pure: where Ollama's loaded models run, from /api/ps (`size` and `size_vram`, in bytes).

    Ollama reports size_vram == size for a model fully on the GPU, 0 for one on the CPU, and
    something in between when layers are split (ollama/ollama api/types.go ProcessModelResponse).
    """
    models = ps.get("models") if isinstance(ps, dict) else None
    if not models:
        return "no model loaded, so GPU use cannot be seen yet (send a request, then run doctor again)"
    parts = []
    for model in models:
        size, vram = int(model.get("size") or 0), int(model.get("size_vram") or 0)
        name = model.get("name") or model.get("model") or "?"
        if size and vram >= size:
            parts.append(f"{name} on the GPU")
        elif vram == 0:
            parts.append(f"{name} on the CPU (size_vram 0: on a GPU host, check the driver with nvidia-smi "
                         "or rocminfo)")
        else:
            parts.append(f"{name} {100 * vram // max(size, 1)}% on the GPU "
                         "(the rest on the CPU: it does not fit in VRAM)")
    return "loaded: " + "; ".join(parts)


def _deepseek(settings: Settings) -> dict:
    if settings.deepseek_api_key is None:
        return finding("deepseek", False,
                       "DEEPSEEK_API_KEY is not set: the cloud tier is off; add it to .env to enable it")
    try:
        response = httpx.get(f"{settings.deepseek_url}/models", timeout=TIMEOUT,
                             headers={"Authorization": f"Bearer {settings.deepseek_api_key.get_secret_value()}"})
    except httpx.HTTPError as exc:
        return finding("deepseek", False, f"cannot reach {settings.deepseek_url} ({type(exc).__name__}); "
                       "check DEEPSEEK_URL and the network")
    if response.status_code == 401:
        return finding("deepseek", False,
                       "DeepSeek rejected DEEPSEEK_API_KEY (401); create a new key on platform.deepseek.com")
    if response.status_code != 200:
        return finding("deepseek", False, f"{settings.deepseek_url}/models answered {response.status_code}")
    return finding("deepseek", True, f"key accepted by {settings.deepseek_url}")
