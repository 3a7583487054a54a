"""What Ollama says about a model (`POST /api/show`), compared with what config.yaml says: pure functions.

Ollama lists `capabilities` (completion, tools, insert, vision, embedding, thinking; server/images.go)
and the trained context length in `model_info["<architecture>.context_length"]`. The gateway plans
with config.yaml; these comparisons tell the operator where the two disagree (`gateway doctor`, and a
warning from the health poll), so a model is never believed able to do what Ollama would refuse.
How it fails: a reply it does not understand yields no capabilities and no context length, which is
reported as a difference, never raised.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from custom_router.data import ModelEntry

# Ollama capability -> the gateway's name. json_schema is not an Ollama capability: `format` works for
# every completion model.
OLLAMA_CAPABILITIES = {"tools": "tools", "vision": "vision", "thinking": "thinking"}


@dataclass(frozen=True, slots=True)
class Reported:
    capabilities: frozenset[str]
    context_length: int | None


def parse_show(show: Mapping[str, object]) -> Reported:
    caps = show.get("capabilities")
    names = (frozenset(OLLAMA_CAPABILITIES[c] for c in caps if c in OLLAMA_CAPABILITIES) if isinstance(caps, list)
             else frozenset())
    info = show.get("model_info")
    context = None
    if isinstance(info, Mapping):
        for key, value in info.items():
            if str(key).endswith(".context_length") and isinstance(value, int):
                context = value
                break
    return Reported(names, context)


def differences(entry: ModelEntry, reported: Reported) -> list[str]:
    """Where config.yaml and Ollama disagree about a local model, each with what to change."""
    out = []
    configured = entry.capabilities & set(OLLAMA_CAPABILITIES.values())
    for cap in sorted(configured - reported.capabilities):
        out.append(f"config.yaml says {entry.name} supports {cap}, Ollama does not: requests needing {cap} would fail; "
                   f"remove it from model_info")
    for cap in sorted(reported.capabilities - configured):
        out.append(f"Ollama reports {cap} for {entry.name}, config.yaml does not: requests needing {cap} go elsewhere; "
                   f"add it to model_info if you want {entry.name} to serve them")
    if reported.context_length is None:
        out.append(f"Ollama reported no context length for {entry.name}")
    elif entry.context_window > reported.context_length:
        out.append(f"config.yaml plans {entry.name} with {entry.context_window} tokens (max_input_tokens), "
                   f"but the model was trained for {reported.context_length}; lower max_input_tokens")
    return out
