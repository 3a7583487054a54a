"""Issue 6 security checks against the real gateway.

- every route in the gateway's /openapi.json, without a key and with a wrong one: nothing but
  LiteLLM's few public info routes answers 2xx, and every error is OpenAI-shaped without traces;
- no secret (master key, DeepSeek key) in /health, error bodies, or any gateway log of the session;
- CORS: no cross-origin access unless CORS_ORIGINS lists the origin (LiteLLM alone allows `*`);
- request size limits apply to every endpoint, not only chat completions.
"""

from __future__ import annotations

import re

import httpx
import pytest
from dotenv import dotenv_values
from starlette.responses import JSONResponse
from starlette.testclient import TestClient

from proxy_config.cors import StripCORSHeaders, cors_layer, strip_litellm_cors
from proxy_config.settings import Settings
from tests.harness import DEEPSEEK_KEY, LOG_DIR, MASTER_KEY, REPO
from tests.reliability.helpers import SECRETS, SHORT, assert_clean_text, assert_openai_error, auth

# LiteLLM routes that answer without a key by design. None carries a secret or per-user data
# (checked below): health probes, the API docs, OAuth/MCP discovery documents and stubs, the
# static provider/model-hub catalogues (the hub is empty without a database), UI theming.
PUBLIC = {
    ("GET", "/"), ("GET", "/routes"), ("GET", "/test"), ("GET", "/health"), ("GET", "/health/readiness"),
    ("GET", "/health/liveness"), ("GET", "/health/liveliness"), ("GET", "/get/ui_theme_settings"),
    ("POST", "/register"), ("POST", "/{mcp_server_name}/register"), ("POST", "/api/event_logging/batch"),
}
PUBLIC_PREFIXES = ("/public/", "/.well-known/", "/litellm/.well-known/")
VALID_CHAT = {"model": "auto", "messages": SHORT}


@pytest.fixture(scope="module")
def routes(gateway) -> list[tuple[str, str]]:
    spec = httpx.get(f"{gateway.url}/openapi.json", timeout=120).json()
    found = [(method.upper(), path) for path, ops in spec["paths"].items() for method in ops
             if method.upper() in ("GET", "POST", "PUT", "PATCH", "DELETE")]
    assert len(found) > 500  # LiteLLM's whole surface, not a stub
    return found


def is_public(method: str, path: str) -> bool:
    return (method, path) in PUBLIC or path.startswith(PUBLIC_PREFIXES)


ADMIN_PREFIXES = ("/v1/", "/key/", "/user/", "/team/", "/model/", "/config/", "/spend/", "/global/", "/organization/",
                  "/budget/", "/customer/", "/credentials")


@pytest.mark.parametrize("headers", [{}, auth("sk-wrong-0000000000000000")], ids=["no-key", "wrong-key"])
def test_no_route_answers_without_a_valid_key(gateway, routes, headers):
    """Without a key: every route. With a wrong key: the inference and admin surfaces (the rest
    behaves the same and costs LiteLLM's ~20 ms per request)."""
    answered, unshaped = [], []
    checked = routes if not headers else [r for r in routes if r[1].startswith(ADMIN_PREFIXES)]
    assert len(checked) > 100
    with httpx.Client(base_url=gateway.url, timeout=60, headers=headers) as client:
        for method, path in checked:
            url = re.sub(r"\{[^}]+\}", "x", path)
            body = VALID_CHAT if path.endswith("/chat/completions") else {}
            response = client.request(method, url, json=body if method in ("POST", "PUT", "PATCH") else None)
            if response.status_code < 400:
                if not is_public(method, path):
                    answered.append(f"{method} {path} -> {response.status_code}")
                for secret in SECRETS:
                    assert secret not in response.text, f"{method} {path}"
            elif response.headers.get("content-type", "").startswith("application/json"):
                try:
                    assert_openai_error(response, response.status_code)
                except AssertionError as exc:
                    unshaped.append(f"{method} {path}: {exc}")
            else:
                unshaped.append(f"{method} {path}: {response.status_code} {response.headers.get('content-type')}")
    assert answered == []
    assert unshaped == []


def test_every_v1_route_and_admin_route_demands_a_key(gateway, routes):
    """The inference and admin surfaces answer 401 (not 400/404) to a well-formed request without a key."""
    sample = [r for r in routes if r[1] in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models",
                                              "/key/generate", "/key/list", "/user/new", "/model/new", "/config/update",
                                              "/spend/logs", "/global/spend")]
    assert len(sample) >= 8
    for method, path in sample:
        body = VALID_CHAT if path.endswith("/chat/completions") else {}
        response = httpx.request(method, f"{gateway.url}{path}", json=body if method != "GET" else None, timeout=30)
        assert_openai_error(response, 401)


def test_health_and_error_bodies_carry_no_secret(gateway, deepseek):
    bodies = [httpx.get(f"{gateway.url}/health", timeout=5).text]
    bodies.append(httpx.post(f"{gateway.url}/v1/chat/completions", json=VALID_CHAT, headers=auth(MASTER_KEY[:-2] + "xx"), timeout=30).text)
    bodies.append(httpx.post(f"{gateway.url}/v1/chat/completions", json={**VALID_CHAT, "temperature": 9}, headers=auth(), timeout=30).text)
    bodies.append(httpx.get(f"{gateway.url}/v1/nothing", headers=auth(), timeout=30).text)
    deepseek.fault("http_401")  # DeepSeek rejecting the gateway's key: its message names the key
    bodies.append(httpx.post(f"{gateway.url}/v1/chat/completions", json={"model": "deepseek-chat", "messages": SHORT},
                             headers=auth(), timeout=30).text)
    for body in bodies:
        assert_clean_text(body)
        assert DEEPSEEK_KEY[-12:] not in body and MASTER_KEY[-12:] not in body


def test_settings_and_shipped_env_allow_no_cross_origin_access():
    assert Settings().cors_origins == []
    shipped = dotenv_values(REPO / ".env.example").get("CORS_ORIGINS") or ""
    assert "*" not in shipped


def test_gateway_without_cors_origins_refuses_cross_origin_access(gateway):
    preflight = httpx.options(f"{gateway.url}/v1/chat/completions", timeout=10, headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    error = assert_openai_error(preflight, 400)
    assert "CORS_ORIGINS" in error["message"]
    assert "access-control-allow-origin" not in preflight.headers
    simple = httpx.get(f"{gateway.url}/v1/models", headers={**auth(), "Origin": "https://evil.example"}, timeout=10)
    assert simple.status_code == 200
    assert "access-control-allow-origin" not in simple.headers  # LiteLLM's own "*" is stripped
    assert "access-control-allow-credentials" not in simple.headers


def litellm_like_app(scope, receive, send):
    """Stands in for LiteLLM's app, whose own CORS middleware allows every origin."""
    return JSONResponse({"ok": True}, headers={"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Credentials": "true"})(scope, receive, send)


def test_cors_follows_the_configured_origins_only():
    client = TestClient(cors_layer(StripCORSHeaders(litellm_like_app), ["https://app.example"]))
    allowed = client.options("/v1/chat/completions", headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"})
    assert (allowed.status_code, allowed.headers["access-control-allow-origin"]) == (200, "https://app.example")
    simple = client.get("/v1/models", headers={"Origin": "https://app.example"})
    assert simple.headers["access-control-allow-origin"] == "https://app.example"
    assert "x-gateway-route" in simple.headers["access-control-expose-headers"]
    assert "access-control-allow-credentials" not in simple.headers
    other = client.get("/v1/models", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    refused = client.options("/v1/models", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"})
    assert (refused.status_code, refused.json()["error"]["code"]) == (400, "cors_rejected")


def test_litellm_cors_headers_are_stripped_only_while_its_cors_middleware_is_installed():
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.cors import CORSMiddleware

    with_cors = Starlette(middleware=[Middleware(CORSMiddleware, allow_origins=["*"])])
    assert isinstance(strip_litellm_cors(with_cors), StripCORSHeaders)
    without = Starlette()
    assert strip_litellm_cors(without) is without


def test_size_limit_applies_to_uploads_too(gateway):
    audio = b"\0" * (4 * 1024 * 1024 + 1)
    response = httpx.post(f"{gateway.url}/v1/audio/transcriptions", headers=auth(), timeout=30,
                          files={"file": ("a.wav", audio, "audio/wav")}, data={"model": "auto"})
    error = assert_openai_error(response, 413)
    assert error["code"] == "request_too_large"


def test_no_secret_in_any_gateway_log_of_the_session():
    logs = sorted(LOG_DIR.glob("*.log"))
    assert logs, f"no gateway logs under {LOG_DIR}"
    leaking = [path.name for path in logs for secret in SECRETS if secret in path.read_text(errors="replace")]
    assert leaking == []
