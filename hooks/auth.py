"""Static-key auth and per-key rate limits, as a LiteLLM custom_auth (config.yaml:
`general_settings.custom_auth: hooks.auth.user_api_key_auth`), plus the token meter callback
(`litellm_settings.callbacks: hooks.auth.instance`) that charges tokens-per-minute budgets.

Who may call what:
- the master key (LITELLM_MASTER_KEY): every route, as LiteLLM's proxy admin, not rate-limited;
- a client key (proxy_config.keys): the OpenAI API routes (/v1/... and the same routes without
  /v1) and Anthropic's /v1/messages, each request counted by hooks.ratelimit against the key's limits;
- no key: LiteLLM's public routes only (gateway.gate closes most of them before LiteLLM).
The key is read once, by LiteLLM's own header precedence (`presented_key`: x-litellm-api-key,
Authorization: Bearer, api-key, x-api-key, x-goog-api-key, Ocp-Apim-Subscription-Key), or from
`?api_key=` when ALLOW_QUERY_API_KEY is on (gateway.gate cuts it from the URL uvicorn's
access log prints and keeps it on the request context). `identify` turns it into the request's
one `Identity`; the gate uses it before the body is read, and `user_api_key_auth` checks that
LiteLLM authenticated the same key, then records it (`ctx.key_hash`) for the ledger and metrics.

Rejections raise LiteLLM's ProxyException, which it renders as an OpenAI-shaped body: 401 for
a missing or unknown key, 403 for a client key on an admin route, 429 over a limit, with
Retry-After and x-ratelimit-* headers. The verdict also goes on the request context, so
gateway.app stamps the x-ratelimit-* headers on every response of a client key.
LiteLLM only ever sees a key's sha256, and logs name keys by `sha256:` prefix only.
The token meter fails open: an error there is logged and never affects a response.
"""

from __future__ import annotations

import functools
import logging
import math
import re
from typing import NamedTuple
from urllib.parse import parse_qsl, urlencode

from fastapi import Request
from litellm.constants import LITELLM_PROXY_ADMIN_NAME, LITELLM_PROXY_MASTER_KEY_ALIAS
from litellm.integrations.custom_logger import CustomLogger
from litellm.proxy._types import LiteLLMRoutes, LitellmUserRoles, ProxyException, UserAPIKeyAuth
from litellm.proxy.auth.auth_utils import get_request_route
from litellm.proxy.auth.user_api_key_auth import get_api_key

from custom_router.policy import Reason
from hooks import context
from hooks.ratelimit import Limits, Verdict, get_limiter, headers
from hooks.runtime import get_runtime
from proxy_config.keys import ClientKey, KeyTable, key_digest, key_id, load_keys

log = logging.getLogger("gateway.auth")


def _pattern(route: str) -> re.Pattern[str]:
    parts = (
        r"[^/]+" if re.fullmatch(r"\{[^}]+\}", p) else ".*" if p == "*" else re.escape(p) for p in route.split("/")
    )
    return re.compile("/".join(parts) + r"\Z")


# Client routes LiteLLM does not count as OpenAI routes: Anthropic's Messages API (routed like chat by
# hooks.routing) and one model's entry (the openai SDK's models.retrieve). Not /models/{model_id}: it would also
# match Google's /models/{name}:generateContent, which is not served.
EXTRA_CLIENT_ROUTES = frozenset({"/v1/messages", "/v1/messages/count_tokens", "/v1/models/{model_id}"})
_CLIENT_ROUTES = frozenset(LiteLLMRoutes.openai_routes.value) | EXTRA_CLIENT_ROUTES
_CLIENT_PATTERNS = tuple(_pattern(r) for r in _CLIENT_ROUTES if "{" in r or "*" in r)


@functools.lru_cache(maxsize=1024)
def is_client_route(route: str) -> bool:
    """The OpenAI API surface and Anthropic's Messages a client key may call; everything else is admin."""
    return route in _CLIENT_ROUTES or any(p.match(route) for p in _CLIENT_PATTERNS)


@functools.cache
def key_table() -> KeyTable:
    table = load_keys(get_runtime().settings)
    log.info("static keys: %d client key(s) %s", len(table.keys), ", ".join(k.id for k in table.keys.values()))
    return table


def _auth_error(status: int, code: str, message: str) -> ProxyException:
    # LiteLLM renders `type`; gateway.errors moves it to `code` and sets the type from the status.
    return ProxyException(message=message, type=code, param="api_key", code=status)


def _limited(key: ClientKey, verdict: Verdict) -> ProxyException:
    wait = max(1, math.ceil(verdict.retry_after))
    if verdict.over == "tokens":
        what = f"{verdict.tokens_limit} tokens per minute"
    else:
        what = f"{verdict.limit} requests per {key.window} s"
    return ProxyException(
        message=f"Rate limit exceeded for key {key.name} ({key.id}): {what}. Retry after {wait} s.",
        type="rate_limit_exceeded", param=None, code=429, headers=dict(headers(verdict)),
    )


def take_query_key(scope: dict) -> str | None:
    """The ?api_key= value, removed from the scope so the access log does not print it."""
    raw = scope.get("query_string", b"")
    if b"api_key" not in raw:
        return None
    pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True)
    found = [value for name, value in pairs if name == "api_key"]
    if found:
        scope["query_string"] = urlencode([(n, v) for n, v in pairs if n != "api_key"]).encode("latin-1")
    return found[0] if found else None


# LiteLLM 1.108.7's key headers (litellm.types.proxy.auth.special_headers.SpecialHeaders), read
# the way its fastapi.security.APIKeyHeader dependencies read them (first value, empty = absent).
KEY_HEADERS = (b"x-litellm-api-key", b"authorization", b"api-key", b"x-api-key", b"x-goog-api-key",
               b"ocp-apim-subscription-key")


def presented_key(raw_headers, route: str) -> str | None:
    """The key LiteLLM will authenticate: its own `get_api_key` over the same header values."""
    found: dict[bytes, str] = {}
    for name, value in raw_headers:
        name = name.lower()
        if name in KEY_HEADERS and name not in found and value:
            found[name] = value.decode("latin-1")
    if not found:
        return None
    key, _ = get_api_key(
        custom_litellm_key_header=found.get(b"x-litellm-api-key"), api_key=found.get(b"authorization"),
        azure_api_key_header=found.get(b"api-key"), anthropic_api_key_header=found.get(b"x-api-key"),
        google_ai_studio_api_key_header=found.get(b"x-goog-api-key"),
        azure_apim_header=found.get(b"ocp-apim-subscription-key"),
        pass_through_endpoints=None, route=route, request=None)
    return key or None


class Identity(NamedTuple):  # not a dataclass: `gateway check` loads this file outside sys.modules
    """Who sent a request: `master`, `client` (with its key), `none` (no key), `invalid` (a key
    the gateway does not know) or `unverified` (DB mode: LiteLLM checks its virtual keys)."""

    role: str
    key_id: str | None = None  # sha256:<8 hex> of the presented key
    key: ClientKey | None = None
    query_key_refused: bool = False

    @property
    def authenticated(self) -> bool:
        return self.role in ("master", "client", "unverified")


NO_KEY = Identity("none")


def identify(presented: str | None, db_mode: bool = False) -> Identity:
    if not presented:
        return NO_KEY
    table = key_table()
    kid = key_id(key_digest(presented))
    if table.is_master(presented):
        return Identity("master", kid)
    key = table.lookup(presented)
    if key is not None:
        return Identity("client", kid, key)
    return Identity("unverified" if db_mode else "invalid", kid)


def identify_scope(scope: dict, route: str, allow_query_key: bool, db_mode: bool = False) -> Identity:
    """The request's identity from its headers (or ?api_key=, cut from the URL either way)."""
    query_key = take_query_key(scope)
    presented = presented_key(scope["headers"], route)
    if presented is None and query_key is not None:
        if not allow_query_key:
            return Identity("none", query_key_refused=True)
        presented = query_key
    ctx = context.current.get()
    if ctx is not None and presented is not None:
        ctx.presented_key = presented
    return identify(presented, db_mode)


QUERY_KEY_OFF = "?api_key= is disabled on this gateway (ALLOW_QUERY_API_KEY); send the key as the header " \
                "'Authorization: Bearer <key>'."
MISSING_KEY = "Missing API key. Send it as the header 'Authorization: Bearer <key>'{how}; " \
              "with the OpenAI SDK pass api_key=<key>."
INVALID_KEY = "Invalid API key ({id}). Check the key, or ask the gateway admin to add it to API_KEYS or KEYS_FILE."
ADMIN_ONLY = "{route} needs the admin (master) key; client keys may call the OpenAI API routes " \
             "(/v1/chat/completions, /v1/models, ...) and /v1/messages only."


def rejection(identity: Identity, route: str, allow_query_key: bool) -> ProxyException | None:
    """The 401/403 for `identity` on `route`, or None when it may go on."""
    if identity.role == "none":
        how = " or ?api_key=<key>" if allow_query_key else ""
        return _auth_error(
            401, "missing_api_key", QUERY_KEY_OFF if identity.query_key_refused else MISSING_KEY.format(how=how)
        )
    if identity.role == "invalid":
        return _auth_error(401, "invalid_api_key", INVALID_KEY.format(id=identity.key_id))
    if identity.role == "client" and not is_client_route(route):
        return _auth_error(403, "admin_key_required", ADMIN_ONLY.format(route=route))
    return None


async def user_api_key_auth(request: Request, api_key: str) -> UserAPIKeyAuth:
    settings = get_runtime().settings
    route = get_request_route(request)
    ctx = context.current.get()
    if route in LiteLLMRoutes.public_routes.value:
        return UserAPIKeyAuth(user_role=LitellmUserRoles.INTERNAL_USER_VIEW_ONLY)
    # gateway.gate moved ?api_key= onto the context; LiteLLM's own parse gave `api_key`.
    presented = api_key or (ctx.presented_key if ctx is not None and settings.allow_query_api_key else None)
    if ctx is not None and ctx.presented_key is not None and presented != ctx.presented_key:
        presented = None  # the gate and LiteLLM disagree on the key: trust neither
    identity = identify(presented)
    problem = rejection(identity, route, settings.allow_query_api_key)
    if problem is not None:
        raise problem
    if ctx is not None:
        ctx.key_hash = identity.key_id
    if identity.role == "master":
        return UserAPIKeyAuth(api_key=LITELLM_PROXY_MASTER_KEY_ALIAS, user_role=LitellmUserRoles.PROXY_ADMIN,
                              user_id=LITELLM_PROXY_ADMIN_NAME)
    key = identity.key
    verdict = await get_limiter().acquire(key.digest, Limits(key.requests, key.window, key.tpm))
    if ctx is not None:
        ctx.rate_limit = verdict
        ctx.client_key = key  # hooks.budgets: the key's cloud budget
        if key.local_only:  # the privacy switch: the routing policy never picks or falls back to the cloud
            ctx.cloud_denied = Reason.LOCAL_ONLY
    if not verdict.allowed:
        raise _limited(key, verdict)
    return UserAPIKeyAuth(api_key=key.digest, key_alias=key.name, user_role=LitellmUserRoles.INTERNAL_USER)


class TokenMeter(CustomLogger):
    """Charges each successful response's tokens to its key's tokens-per-minute budget."""

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        if get_runtime().settings.db_mode:
            return  # DB mode: LiteLLM meters its virtual keys itself
        try:
            payload = kwargs.get("standard_logging_object") or {}
            digest = (payload.get("metadata") or {}).get("user_api_key_hash")
            key = key_table().keys.get(digest or "")
            if key is not None and key.tpm:
                await get_limiter().charge(key.digest, int(payload.get("total_tokens") or 0))
        except Exception:  # metering must never break a request
            log.exception("token meter failed")


instance = TokenMeter()
