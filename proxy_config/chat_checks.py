"""Checks of request bodies that LiteLLM lets through, so every backend sees the same rules.

Pure functions over the raw or parsed body; each failure raises `RequestRejected` (400) whose
message names the field, what was sent and what to send instead. `gateway.error_layer.ErrorLayer`
runs them before LiteLLM parses the request.

What LiteLLM 1.108.7 already rejects with a 400 (invalid JSON, a non-string `model`, an unknown
model) is checked here too, for one wording; what it lets through (a JSON array as the body,
`messages` that are not a list of objects, unknown roles, temperature or max_tokens out of
range, wrongly typed optional parameters) would otherwise reach a backend, which answers
inconsistently (DeepSeek 422, Ollama ignores it) or crashes LiteLLM into a 500 or a fallback.
Unknown fields pass: LiteLLM drops or forwards them. `null` counts as absent, as in OpenAI's API.

Any inference body also gets: `check_served_model` (404 `model_not_found` for a model that is not
a configured group: a provider-prefixed name like `deepseek/deepseek-chat` would otherwise skip
the routing policy and the ledger's prices) and `check_n` (`n` over the model's cap, a cost guard).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping

ROLES = ("system", "developer", "user", "assistant", "tool", "function")
EXAMPLE = '{"role": "user", "content": "Hello"}'


class RequestRejected(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


def bad(param: str, message: str, code: str = "invalid_value") -> RequestRejected:
    return RequestRejected(400, message, param, code)


def describe(value: object) -> str:
    if value is None:
        return "null"
    kind = {bool: "a boolean", str: "a string", int: "the integer", float: "the number", list: "an array",
            dict: "an object"}
    text = json.dumps(value)
    shown = text if len(text) <= 40 else text[:37] + "..."
    return f"{kind.get(type(value), type(value).__name__)} {shown}"


def check_json(body: bytes, max_depth: int, required: bool) -> object:
    """Parse a JSON body: UTF-8, valid JSON (no NaN/Infinity), at most `max_depth` levels deep."""
    if not body.strip():
        if required:
            raise bad(None, "The request body is empty; send a JSON object, e.g. "
                            f'{{"model": "auto", "messages": [{EXAMPLE}]}}.', "missing_body")
        return None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise bad(None, f"The request body is not valid UTF-8 (bad byte at offset {exc.start}); encode it as UTF-8.",
                  "invalid_utf8") from None
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise too_deep(max_depth) from None
    except ValueError as exc:
        where = f" at line {exc.lineno} column {exc.colno}" if hasattr(exc, "lineno") else ""
        why = getattr(exc, "msg", exc)
        raise bad(None, f"The request body is not valid JSON ({why}{where}); send one JSON object.",
                  "invalid_json") from None
    if nesting_exceeds(value, max_depth):
        raise too_deep(max_depth)
    if required and not isinstance(value, dict):
        raise bad(None, f"The request body must be a JSON object, got {describe(value)}.", "invalid_type")
    return value


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")


def too_deep(limit: int) -> RequestRejected:
    return bad(None, f"The request body's JSON is nested more than {limit} levels deep; flatten it.", "json_too_deep")


def nesting_exceeds(value: object, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


# ------------------------------------------------------------------ chat completions
def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def number_in(lo: float, hi: float) -> Callable[[str, object], None]:
    def check(name: str, value: object) -> None:
        if not is_number(value):
            raise bad(name, f"'{name}' must be a number between {lo} and {hi}, got {describe(value)}.", "invalid_type")
        if not lo <= value <= hi:
            raise bad(name, f"'{name}' must be between {lo} and {hi}, got {value}.")
    return check


def integer_in(lo: int, hi: int) -> Callable[[str, object], None]:
    def check(name: str, value: object) -> None:
        if not is_int(value):
            raise bad(name, f"'{name}' must be an integer between {lo} and {hi}, got {describe(value)}.",
                      "invalid_type")
        if not lo <= value <= hi:
            raise bad(name, f"'{name}' must be between {lo} and {hi}, got {value}.")
    return check


def of_type(kind: type | tuple[type, ...], what: str) -> Callable[[str, object], None]:
    def check(name: str, value: object) -> None:
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise bad(name, f"'{name}' must be {what}, got {describe(value)}.", "invalid_type")
    return check


def check_stop(name: str, value: object) -> None:
    if not (isinstance(value, str) or (isinstance(value, list) and all(isinstance(s, str) for s in value))):
        raise bad(name, f"'{name}' must be a string or an array of strings, got {describe(value)}.", "invalid_type")


def check_tools(name: str, value: object) -> None:
    if not isinstance(value, list):
        raise bad(name, f"'{name}' must be an array of tool objects, got {describe(value)}.", "invalid_type")
    for i, tool in enumerate(value):
        if not (isinstance(tool, dict) and isinstance(tool.get("type"), str)):
            raise bad(f"{name}[{i}]", f"'{name}[{i}]' must be an object like "
                      '{"type": "function", "function": {"name": ...}}, ' f"got {describe(tool)}.", "invalid_type")


def check_logit_bias(name: str, value: object) -> None:
    of_type(dict, "an object mapping token ids to numbers")(name, value)
    for token, bias in value.items():
        number_in(-100, 100)(f"{name}.{token}", bias)


def check_response_format(name: str, value: object) -> None:
    if not (isinstance(value, dict) and isinstance(value.get("type"), str)):
        raise bad(name, f"'{name}' must be an object like {{\"type\": \"json_object\"}}, got {describe(value)}.",
                  "invalid_type")


# LiteLLM-only request fields a client of this gateway may not set. Endpoints and credentials are
# the gateway's (LiteLLM rejects them too, but its auth error path answers 500 without prisma);
# fallbacks, retries and timeouts are the routing policy's; the rest are LiteLLM internals, some
# of which LiteLLM echoes into response headers and crashes on (e.g. a non-Latin-1 guardrail name).
CLIENT_FORBIDDEN = frozenset({
    "api_base", "base_url", "api_key", "api_version", "user_config", "model_list",
    "fallbacks", "context_window_fallbacks", "num_retries", "max_retries", "timeout", "stream_timeout",
    "mock_response", "mock_tool_calls", "caching", "cache", "guardrails", "litellm_metadata",
})

PARAMETERS: Mapping[str, Callable[[str, object], None]] = {
    "temperature": number_in(0, 2),
    "top_p": number_in(0, 1),
    "presence_penalty": number_in(-2, 2),
    "frequency_penalty": number_in(-2, 2),
    "n": integer_in(1, 128),
    "top_logprobs": integer_in(0, 20),
    "seed": integer_in(-(2**63), 2**63 - 1),
    "stream": of_type(bool, "true or false"),
    "logprobs": of_type(bool, "true or false"),
    "parallel_tool_calls": of_type(bool, "true or false"),
    "user": of_type(str, "a string"),
    "stop": check_stop,
    "stream_options": of_type(dict, 'an object like {"include_usage": true}'),
    "metadata": of_type(dict, "an object"),
    "tools": check_tools,
    "tool_choice": of_type((str, dict), 'a string ("none", "auto", "required") or an object'),
    "logit_bias": check_logit_bias,
    "response_format": check_response_format,
}


def check_chat(body: dict, *, model_in_path: bool = False, max_output_tokens: int = 1_000_000) -> None:
    """Reject a chat-completion body a backend would choke on, naming the field to fix."""
    check_client_fields(body)
    if not model_in_path:
        check_model(body.get("model"))
    check_messages(body.get("messages"))
    for name in ("max_tokens", "max_completion_tokens"):
        if body.get(name) is not None:
            integer_in(1, max_output_tokens)(name, body[name])
    for name, check in PARAMETERS.items():
        if body.get(name) is not None:
            check(name, body[name])


def check_client_fields(body: dict) -> None:
    """Any OpenAI-path body: no LiteLLM-only field (CLIENT_FORBIDDEN)."""
    forbidden = sorted(CLIENT_FORBIDDEN & body.keys())
    if forbidden:
        raise bad(forbidden[0], f"'{forbidden[0]}' cannot be set by clients of this gateway (routing, timeouts, "
                                "credentials and caching come from its config.yaml); remove it from the request.",
                  "unsupported_parameter")


def check_model(model: object) -> None:
    if model is None:
        raise bad("model", "'model' is missing; set it to a model from GET /v1/models, or \"auto\".",
                  "missing_required_parameter")
    if not isinstance(model, str) or not model.strip():
        raise bad("model", f"'model' must be a model name from GET /v1/models (or \"auto\"), got {describe(model)}.",
                  "invalid_type")


def check_served_model(model: object, served: Collection[str]) -> None:
    """Only configured model groups (and `auto`) are served; anything else is a 404."""
    if isinstance(model, str) and model not in served:
        shown = model if len(model) <= 40 else model[:37] + "..."
        raise RequestRejected(404, f"The model {shown!r} is not served by this gateway; call GET /v1/models for the "
                                   "models you can use, or send \"auto\".", "model", "model_not_found")


def check_n(body: Mapping[str, object], model: object, caps: Mapping[str, int]) -> None:
    """`n` choices cost n generations: at most the model's cap (gateway_settings.max_n_local/max_n_cloud)."""
    n, cap = body.get("n"), caps.get(model) if isinstance(model, str) else None
    if cap is not None and is_int(n) and n > cap:
        raise bad("n", f"'n' is at most {cap} for model {model!r} on this gateway (each choice is a separate, billed "
                       f"generation), got {n}; ask for fewer choices or repeat the request.", "n_too_large")


def check_messages(messages: object) -> None:
    if messages is None:
        raise bad("messages", f"'messages' is missing; send an array of messages, e.g. [{EXAMPLE}].",
                  "missing_required_parameter")
    if not isinstance(messages, list):
        raise bad("messages", f"'messages' must be an array of messages like [{EXAMPLE}], got {describe(messages)}.",
                  "invalid_type")
    if not messages:
        raise bad("messages", f"'messages' is empty; send at least one message, e.g. [{EXAMPLE}].")
    for i, message in enumerate(messages):
        check_message(f"messages[{i}]", message)


def check_message(where: str, message: object) -> None:
    if not isinstance(message, dict):
        raise bad(where, f"'{where}' must be an object like {EXAMPLE}, got {describe(message)}.", "invalid_type")
    role = message.get("role")
    if role not in ROLES:
        got = "missing" if role is None else describe(role)
        raise bad(f"{where}.role", f"'{where}.role' must be one of {', '.join(ROLES)}; it is {got}.")
    content = message.get("content")
    if content is None:
        if role not in ("assistant", "function"):  # an assistant turn may carry only tool_calls
            raise bad(f"{where}.content", f"'{where}.content' is missing; send the {role} message's text as a string.",
                      "missing_required_parameter")
    elif isinstance(content, list):
        for j, part in enumerate(content):
            if not (isinstance(part, dict) and isinstance(part.get("type"), str)):
                raise bad(f"{where}.content[{j}]", f"'{where}.content[{j}]' must be a content part like "
                          f'{{"type": "text", "text": "Hello"}}, got {describe(part)}.', "invalid_type")
    elif not isinstance(content, str):
        raise bad(f"{where}.content",
                  f"'{where}.content' must be a string or an array of content parts, got {describe(content)}.",
                  "invalid_type")
    for name, kind, what in (("name", str, "a string"), ("tool_calls", list, "an array"),
                             ("tool_call_id", str, "a string")):
        if message.get(name) is not None and not isinstance(message[name], kind):
            raise bad(f"{where}.{name}", f"'{where}.{name}' must be {what}, got {describe(message[name])}.",
                      "invalid_type")


def largest_output_tokens(config: Mapping[str, object], default: int = 1_000_000) -> int:
    """The largest `model_info.max_output_tokens` in config.yaml: no model can honour more."""
    sizes = [(item.get("model_info") or {}).get("max_output_tokens") for item in config.get("model_list") or []
             if isinstance(item, dict)]
    sizes = [int(size) for size in sizes if is_int(size)]
    return max(sizes) if sizes else default
