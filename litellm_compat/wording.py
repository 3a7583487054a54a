"""What the gateway reads out of LiteLLM's error text and private attributes, in one place.

LiteLLM reports many failures only in prose (a refused connection is an `APIConnectionError` like a
malformed reply or one of LiteLLM's own bugs; a fallback that failed too is a sentence in the
message), so some decisions match its wording. Everything matched lives here, and `WORDINGS`
names for each piece the module whose source must still contain it: tests/architecture/
test_litellm_compat.py and scripts/try-litellm.sh check them against the installed LiteLLM.
`PRIVATE_ATTRIBUTES` does the same for the private attributes read here.

- `is_connect_failure`: the one connect-failure predicate (hooks.routing marks Ollama down,
  hooks.usage marks the cloud unreachable on it);
- `is_ollama_error_line`, `FALLBACK_FAILED`: hooks.routing's 503 when both tiers failed;
- `DEBUG_TAILS`, `LITELLM_PREFIX`, `PROVIDER_PREFIX`: what gateway.errors cuts out of messages;
- `upstream_finished`, `hidden_params`: reads of private attributes of LiteLLM's responses;
- `RAW_MODEL_NAME_KEY`: LiteLLM's exported constant, not a copy of it.
How it fails: a wording LiteLLM no longer uses stops matching; the checks above say which one.
Then a refused connection is found by the next health poll instead of at once, and an error
message keeps LiteLLM's debug tail; no request fails because of it.
"""

from __future__ import annotations

import inspect
import importlib
import re
from dataclasses import dataclass

from litellm import constants as litellm_constants

RAW_MODEL_NAME_KEY = litellm_constants.RETURN_RAW_MODEL_NAME_METADATA_KEY  # LiteLLM's own: keep the served model's name
FALLBACK_FAILED = "also failed: "  # the router's wording when the fallback group failed too
OLLAMA_ERROR_LINE = "Got unexpected response from Ollama: {'error'"  # Ollama's `{"error": ...}` stream line
# A refused or unresolvable connection, as aiohttp, asyncio, anyio, the OS and httpx word it.
CONNECT_FAILURES = ("Cannot connect to host", "Connect call failed", "Connection refused",
                    "All connection attempts failed", "Name or service not known", "ConnectError", "ConnectTimeout")
# LiteLLM wraps exceptions it does not map (its own bugs, a client's odd body) in APIConnectionError too.
NOT_CONNECTION = ("TypeError", "AttributeError", "KeyError", "ValueError", "IndexError", "JSONDecodeError")
DEBUG_TAILS = re.compile(r"\s*(\n\nLiteLLM:|LiteLLM Retried:|Received Model Group=|Available Model Group Fallbacks=|"
                         r"Debug Information).*", re.S)
LITELLM_PREFIX = re.compile(r"litellm\.(\w+): (?:\1: )?")  # "litellm.BadRequestError: BadRequestError: "
# "DeepseekException - ", "Ollama_chatException - "
PROVIDER_PREFIX = re.compile(r"\b([A-Za-z]+?)(?:_chat)?Exception - ")


@dataclass(frozen=True)
class Wording:
    name: str
    text: str  # a literal the source must contain
    module: str  # where it is produced


WORDINGS: tuple[Wording, ...] = (
    Wording("fallback-failed", "also failed: {fallback_failure_detail}", "litellm.router_utils.common_utils"),
    Wording("ollama-error-line", "Got unexpected response from Ollama: {chunk}",
            "litellm.llms.ollama.chat.transformation"),
    Wording("debug-tail-retried", " LiteLLM Retried: ", "litellm.exceptions"),
    # DEBUG_TAILS also cuts "Received Model Group=" and "Available Model Group Fallbacks=", which earlier
    # releases appended; 1.108.7 has neither, so they are not checked here.
    Wording("litellm-prefix", 'self.message = f"litellm.BadRequestError: {message}"', "litellm.exceptions"),
    Wording("provider-prefix", 'custom_llm_provider[1:] + "Exception"',
            "litellm.litellm_core_utils.exception_mapping_utils"),
    Wording("provider-prefix-dash", 'message=f"{exception_provider} - {message}"',
            "litellm.litellm_core_utils.exception_mapping_utils"),
    Wording("connect-aiohttp", "Cannot connect to host", "aiohttp.client_exceptions"),
    Wording("connect-asyncio", "Connect call failed", "asyncio.selector_events"),
    Wording("connect-anyio", "All connection attempts failed", "anyio._core._sockets"),
    Wording("connect-httpx", "class ConnectError(", "httpx._exceptions"),
)

STREAM_WRAPPER = "litellm.litellm_core_utils.streaming_handler:CustomStreamWrapper"
PRIVATE_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    STREAM_WRAPPER: ("received_finish_reason", "intermittent_finish_reason", "chunks"),
    "litellm.router:FallbackAwareStreamWrapper": ("fallback_headers_adopted",),  # the router's stream after a fallback
    "litellm.types.utils:ModelResponse": ("_hidden_params",),
}


def wording_problem(wording: Wording) -> str | None:
    """None when `wording.module`'s source still contains `wording.text`, else what is wrong."""
    try:
        source = inspect.getsource(importlib.import_module(wording.module))
    except Exception as exc:
        return f"{wording.module} cannot be read ({type(exc).__name__}: {exc})"
    return None if wording.text in source else f"{wording.module} no longer contains {wording.text!r}"


def private_attribute_problem(target: str, names: tuple[str, ...]) -> str | None:
    """None when the class named `target` sets (or declares) every attribute in `names`."""
    module_name, _, class_name = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
        source = inspect.getsource(cls)
    except Exception as exc:
        return f"{target} cannot be read ({type(exc).__name__}: {exc})"
    missing = [n for n in names if f"self.{n}" not in source and not re.search(rf"^\s+{n}\s*:", source, re.M)]
    return f"{target} no longer sets {', '.join(missing)}" if missing else None


def is_connect_failure(exc: BaseException | None) -> bool:
    """True only when the backend could not be reached at all. LiteLLM raises APIConnectionError for a
    dropped reply, malformed JSON and its own bugs too: those never change a backend's health."""
    if exc is None or isinstance(exc, (TypeError, ValueError)) or any(n in str(exc) for n in NOT_CONNECTION):
        return False
    first, seen = exc, set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        text = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, ConnectionRefusedError) or any(marker in text for marker in CONNECT_FAILURES):
            return True
        exc = exc.__cause__ or exc.__context__ or getattr(exc, "original_exception", None)
    return "Timeout" in type(first).__name__ and "Connect" in repr(first)


def is_ollama_error_line(exc: BaseException) -> bool:
    """LiteLLM 1.108.7 raises a 400 for Ollama's own `{"error": ...}` stream line (a runner crash,
    found by the soak test): the backend failed, not the client, so both tiers failing is a 503."""
    return getattr(exc, "status_code", None) == 400 and OLLAMA_ERROR_LINE in str(getattr(exc, "message", None) or exc)


def hidden_params(response: object) -> dict:
    """LiteLLM's private `_hidden_params` of a response (model_id, api_base, ...); {} when absent."""
    hidden = getattr(response, "_hidden_params", None)
    return hidden if isinstance(hidden, dict) else {}


def upstream_finished(stream: object) -> bool:
    """Did the provider itself end this stream (LiteLLM's CustomStreamWrapper)? True when that cannot be told."""
    if getattr(stream, "fallback_headers_adopted", False):
        return True
    if getattr(stream, "received_finish_reason", None) or getattr(stream, "intermittent_finish_reason", None):
        return True
    chunks = getattr(stream, "chunks", None)
    if not isinstance(chunks, list):
        return True
    return any(_finish_reason(chunk) for chunk in chunks)


def _finish_reason(chunk: object) -> str | None:
    choices = getattr(chunk, "choices", None)
    return getattr(choices[0], "finish_reason", None) if choices else None
