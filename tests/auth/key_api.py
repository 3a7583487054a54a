"""A stub of LiteLLM's key API (/key/info, /key/generate, /key/update) for `gateway keys sync` tests.

It follows litellm 1.108.7's management endpoints: the master key in `Authorization: Bearer`,
keys stored by sha256 (a key starting with sk- is hashed, anything else is taken as a hash),
404 for an unknown key, 400 for a custom key that is not sk-... with 16+ characters, errors as
`{"error": {"message", "type", "param", "code"}}`. Every request's URL is recorded.
"""

from __future__ import annotations

import hashlib

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest() if key.startswith("sk-") else key


def _error(status: int, message: str, type_: str, param: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": type_, "param": param, "code": str(status)}}, status)


class KeyApi:
    def __init__(self, master_key: str) -> None:
        self.master_key = master_key
        self.rows: dict[str, dict] = {}
        self.urls: list[str] = []
        self.app = Starlette(routes=[
            Route("/key/info", self.info, methods=["GET"]),
            Route("/key/generate", self.generate, methods=["POST"]),
            Route("/key/update", self.update, methods=["POST"]),
        ])

    def _authorized(self, request: Request) -> bool:
        self.urls.append(str(request.url))
        return request.headers.get("authorization") == f"Bearer {self.master_key}"

    async def info(self, request: Request) -> JSONResponse:
        if not self._authorized(request):
            return _error(401, "Authentication Error, Invalid proxy server token passed.", "auth_error")
        key = request.query_params.get("key", "")
        row = self.rows.get(_hash(key))
        if row is None:
            return _error(404, "Key not found in database", "not_found_error", "key")
        return JSONResponse({"key": key, "info": {**row, "status": "active"}})

    async def generate(self, request: Request) -> JSONResponse:
        if not self._authorized(request):
            return _error(401, "Authentication Error, Invalid proxy server token passed.", "auth_error")
        body = await request.json()
        key = body.get("key")
        if not key or not key.startswith("sk-") or len(key) < 16:
            return _error(400, "Invalid key format. LiteLLM Virtual Key must start with 'sk-'.", "bad_request_error")
        token = _hash(key)
        if token in self.rows:
            return _error(400, "Unique key violation: key already exists", "bad_request_error")
        self.rows[token] = {"key_alias": body.get("key_alias"), "rpm_limit": body.get("rpm_limit"),
                            "tpm_limit": body.get("tpm_limit"), "metadata": body.get("metadata") or {}}
        return JSONResponse({"key": key, "token": token, "key_alias": body.get("key_alias")})

    async def update(self, request: Request) -> JSONResponse:
        if not self._authorized(request):
            return _error(401, "Authentication Error, Invalid proxy server token passed.", "auth_error")
        body = await request.json()
        row = self.rows.get(_hash(body.pop("key", "")))
        if row is None:
            return _error(404, "Key not found", "not_found_error", "key")
        row.update({k: v for k, v in body.items() if k in ("key_alias", "rpm_limit", "tpm_limit")})
        return JSONResponse({**row})
