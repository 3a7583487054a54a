"""`GET /v1/responses/{id}`, `GET /v1/responses/{id}/input_items` and `DELETE /v1/responses/{id}`,
answered from the gateway's response store (hooks.responses, hooks.response_store) for
responses of either tier. LiteLLM would ask the provider, and neither Ollama nor DeepSeek
stores responses.

An ASGI layer behind proxy_config.gate, so the key has been checked (a client key may call these
routes); a key sees only the responses it created: any other id is a 404, whether it does not
exist, expired, or is another key's.

How it fails: every answer is OpenAI-shaped JSON; a store that cannot be read is a 503 saying so.
"""

from __future__ import annotations

import json
import re

from hooks.response_store import StoreUnavailable
from proxy_config.errors import error_body, send_error

PATH = re.compile(r"/(?:openai/)?(?:v1/)?responses/(?!input_tokens/?\Z)([^/]+)(/input_items)?/?\Z")


async def send_json(send, status: int, body: object) -> None:
    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})


class StoredResponses:
    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        match = PATH.match(scope["path"]) if scope["type"] == "http" else None
        method = scope.get("method")
        if match is None or method not in ("GET", "DELETE") or (match.group(2) and method != "GET"):
            await self.app(scope, receive, send)
            return
        from hooks.responses import get_store, owner

        response_id, items = match.group(1), bool(match.group(2))
        try:
            if method == "DELETE":
                found = await get_store().delete(owner(), response_id)
                stored = None
            else:
                stored = await get_store().get(owner(), response_id)
                found = stored is not None
        except StoreUnavailable:
            await send_error(send, 503, error_body(503, "Stored responses cannot be read right now (the gateway's "
                                                        "database failed); retry later.", None, "store_unavailable"))
            return
        if not found:
            await send_error(send, 404, error_body(404, f"Response with id '{response_id}' not found (it is another "
                                                        "key's, was created with store=false, or is older than the "
                                                        "gateway's response retention).", None, "not_found"))
            return
        if method == "DELETE":
            await send_json(send, 200, {"id": response_id, "object": "response.deleted", "deleted": True})
        elif items:
            data = [dict(item) for item in stored.conversation]
            await send_json(send, 200, {"object": "list", "data": data, "has_more": False,
                                        "first_id": (data[0].get("id") if data else None),
                                        "last_id": (data[-1].get("id") if data else None)})
        else:
            await send_json(send, 200, stored.body)
