"""Stateful Responses API (`/v1/responses`) on both tiers (config.yaml: `hooks.responses.instance`,
listed last: its stream hook must not stand between hooks.streams and LiteLLM's stream).

- before routing (`continue_conversation`, called by hooks.routing's pre-call hook, so the policy
  measures the whole conversation): a request with `previous_response_id` gets the whole
  conversation: the stored conversation of that response (its input items, earlier turns included) and its output items
  go before the new input, and `previous_response_id` is taken off the request. The routing hook
  then measures and routes the whole conversation, so a conversation may switch tiers between
  turns (a short turn local, a long one to the cloud) and every turn reads all earlier ones.
  As on OpenAI, the previous turn's `instructions` are not carried over.
- after the response (non-streaming: the success hook; streaming: when the
  `response.completed` event passes, before the client gets it): the response and its
  conversation are stored (hooks.response_store), unless the request said `store: false`.
- `GET` / `DELETE /v1/responses/{id}` are answered from the store (gateway.app wires
  `answer`), for responses of either tier; another key's response is not found (404).

Why our own store and not LiteLLM's: LiteLLM 1.108.7 rebuilds a `previous_response_id`
conversation for providers without server-side state (its Responses-to-chat bridge, which
Ollama and DeepSeek go through) from its spend logs (`ResponsesSessionHandler`), which exist
only with its Prisma database (DB mode, not the default); without it the previous turns are
silently dropped. Its ids also name the deployment that answered and its router pins the next
turn to that deployment, which would undo the tier decision; its `GET /v1/responses/{id}` asks
the provider, and neither Ollama nor DeepSeek stores responses ("GET responses is not supported
for ollama_chat"). The gateway's store keeps what the client got, in the ledger's database.

How it fails: an unknown, expired or another key's `previous_response_id` is a 404
`previous_response_not_found`, as on OpenAI; a store that cannot be read is a 503 saying so.
A response that cannot be stored is logged (`gateway.responses`) and still answered.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

from litellm.integrations.custom_logger import CustomLogger
from litellm.proxy._types import ProxyException

from hooks import context
from hooks.response_store import ResponseStore, StoreUnavailable

log = logging.getLogger("gateway.responses")

RESPONSES_CALL_TYPES = frozenset({"aresponses", "responses"})
# Output items a later turn reads. Reasoning is not replayed: DeepSeek answers 400 when an earlier
# turn's reasoning_content comes back in the messages (DeepSeek docs, "Reasoning Model").
REPLAYED_OUTPUT = frozenset({"message", "function_call"})


def owner() -> str | None:
    """The full sha256 of the request's key (its short form in logs is too short to scope data by)."""
    from proxy_config.keys import key_digest

    ctx = context.current.get()
    return key_digest(ctx.presented_key) if ctx is not None and ctx.presented_key else None


def as_items(value: object) -> list:
    """The Responses API `input` as a list of items (a string is one user message)."""
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def replayable(output: object) -> list:
    """A response's output items that the next turn reads as input."""
    return [item for item in output if isinstance(item, dict) and item.get("type") in REPLAYED_OUTPUT] \
        if isinstance(output, list) else []


def not_found(response_id: str, param: str | None = None) -> ProxyException:
    what = "Previous response" if param else "Response"
    return ProxyException(message=f"{what} with id '{response_id}' not found (it is another key's, was stored with "
                                  "store=false, or is older than the gateway's response retention).",
                          type="previous_response_not_found" if param else "not_found", param=param, code=404)


def unavailable(exc: StoreUnavailable) -> ProxyException:
    log.error("%s", exc)
    return ProxyException(message="Stored responses cannot be read right now (the gateway's database failed); retry, "
                                  "or send the whole conversation as `input`.", type="store_unavailable", param=None,
                          code=503)


@dataclass
class Turn:
    """One Responses API request, kept on the request context until its response is stored."""

    conversation: list  # the input items, earlier turns included
    previous_response_id: str | None
    store: bool  # False when the client sent `store: false`
    saved: bool = False


@functools.cache
def get_store() -> ResponseStore:
    from hooks.ledger_store import open_store
    from hooks.runtime import get_runtime

    settings = get_runtime().settings
    return ResponseStore(open_store(settings), settings.routing.response_retention_days)


def _as_dict(response: object) -> dict | None:
    if isinstance(response, dict):
        return response
    dump = getattr(response, "model_dump", None)
    return dump(mode="json", exclude_none=False) if dump is not None else None


async def continue_conversation(data: dict) -> None:
    """Before routing (hooks.routing calls it for every Responses API request): expand a
    `previous_response_id` into the whole conversation, and note the turn for storing its response."""
    previous = data.pop("previous_response_id", None)
    if previous:
        try:
            stored = await get_store().get(owner(), str(previous))
        except StoreUnavailable as exc:
            raise unavailable(exc) from None
        if stored is None:
            raise not_found(str(previous), "previous_response_id")
        data["input"] = [*stored.conversation, *replayable(stored.body.get("output")), *as_items(data.get("input"))]
    ctx = context.current.get()
    if ctx is not None:
        ctx.turn = Turn(
            as_items(data.get("input")), str(previous) if previous else None, data.get("store") is not False
        )


class ResponsesHook(CustomLogger):
    """Stores each response; listed after hooks.streams, whose stream check needs LiteLLM's own stream."""

    async def async_post_call_success_hook(self, data, user_api_key_dict, response):
        if getattr(response, "object", None) == "response":
            await save(response)
        return response

    async def async_post_call_streaming_iterator_hook(self, user_api_key_dict, response, request_data):
        async for event in response:
            if getattr(event, "type", None) == "response.completed":
                await save(getattr(event, "response", None))
            yield event


async def save(response: object) -> None:
    """Store a completed response with its conversation (once a request); never raises."""
    ctx = context.current.get()
    turn = getattr(ctx, "turn", None)
    if turn is None or turn.saved:
        return
    try:
        if turn.previous_response_id and hasattr(response, "previous_response_id"):
            response.previous_response_id = turn.previous_response_id  # the client's id, as OpenAI echoes it
        body = _as_dict(response)
        if not turn.store or not body or not body.get("id"):
            return
        turn.saved = True
        await get_store().save(owner(), body, turn.conversation)
    except Exception:  # the client still gets its answer
        log.exception("could not store response %s", getattr(response, "id", None))


instance = ResponsesHook()
