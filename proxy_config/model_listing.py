"""`GET /v1/models` says which models can answer now: LiteLLM's list (filtered by the key as LiteLLM
does), each entry marked with the gateway's own facts.

Every configured model stays listed, because a name that is not installed still answers (the
policy sends it to the other tier, `local-unavailable`); hiding it would make a working name look
wrong. Each entry of a configured group gets
- `tier`: `local`, `cloud` or `auto`;
- `installed` (local models): whether Ollama's last successful `/api/tags` poll listed it;
- `available`: whether its own tier can serve it now (local: Ollama up and the model installed;
  cloud: a DeepSeek key and no recent connection failure; auto: either);
- `note` when it is not available: what happens to a request for it, and what to do.
How it fails: a body that is not LiteLLM's model list passes through untouched, and any error while
marking is logged and the original body is sent (fail open).
"""

from __future__ import annotations

import json
import logging

from custom_router.policy import BackendState, ModelEntry, Policy, Tier, normalize_tag

log = logging.getLogger("gateway.models")

PREFIXES = ("/v1/models", "/models")


def is_listing(path: str) -> bool:
    """GET /v1/models and GET /v1/models/{id} (and the same without /v1)."""
    return path.rstrip("/") in PREFIXES or path.startswith(tuple(p + "/" for p in PREFIXES))


def mark(entry: ModelEntry, policy: Policy, state: BackendState, cloud_ready: bool) -> dict[str, object]:
    """The gateway's fields for one model group."""
    if entry.tier is Tier.LOCAL:
        installed = normalize_tag(entry.backend_model) in state.installed
        fields: dict[str, object] = {"tier": "local", "installed": installed, "available": state.local_ok(entry)}
        if not state.ollama_up:
            why = "Ollama is not reachable"
        elif not installed:
            why = f"it is not installed in Ollama (run `gateway models pull {entry.backend_model}`)"
        else:
            return fields
        where = "get a 503" if entry.mode == "embedding" else f"are served by the cloud ({policy.cloud_default})"
        fields["note"] = f"Not available locally: {why}; requests for it {where}."
        return fields
    if entry.tier is Tier.CLOUD:
        fields = {"tier": "cloud", "available": cloud_ready}
        if not cloud_ready:
            fields["note"] = (f"The cloud tier is not available ({state.cloud_problem or 'no DEEPSEEK_API_KEY'}); "
                              f"requests for it are served locally ({policy.local_default}) when a local model can.")
        return fields
    local = policy.models.get(policy.local_default)
    return {"tier": "auto", "available": cloud_ready or (local is not None and state.local_ok(local))}


def marked_body(raw: bytes, policy: Policy, state: BackendState, cloud_ready: bool) -> bytes:
    """LiteLLM's `{"data": [...]}` (or one model) with the gateway's fields on every configured model."""
    try:
        body = json.loads(raw)
        if not isinstance(body, dict):
            return raw
        for item in body["data"] if isinstance(body.get("data"), list) else [body]:
            entry = policy.models.get(item.get("id")) if isinstance(item, dict) else None
            if entry is not None:
                item.update(mark(entry, policy, state, cloud_ready))
        return json.dumps(body).encode()
    except Exception:  # fail open: the list as LiteLLM made it
        log.exception("could not mark the model list")
        return raw


def marking(send, facts):
    """A send() that buffers a 200 model list and sends it marked; `facts()` gives (policy, state, cloud_ready)."""
    start: dict | None = None
    chunks: list[bytes] = []

    async def marking_send(message) -> None:
        nonlocal start
        if message["type"] == "http.response.start" and message["status"] == 200:
            start = message
            return
        if start is None or message["type"] != "http.response.body":
            await send(message)
            return
        chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        body = marked_body(b"".join(chunks), *facts())
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    return marking_send
