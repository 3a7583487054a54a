"""The anonymous surface and the endpoints the product does not serve (issue 17, findings 6 and 9),
plus CORS, size limits and secrets, swept over every route of LiteLLM's app.

Every route of /openapi.json (read with the master key) is called with no key, a wrong key and a
client key; the bodies aim every URL-like field at the loopback listener, which must see nothing.
"""

from __future__ import annotations

import re

import httpx
import pytest
from dotenv import dotenv_values
from starlette.responses import JSONResponse
from starlette.testclient import TestClient

from gateway.cors import StripCORSHeaders, cors_layer, strip_litellm_cors
from gateway.gate import Access, classify
from proxy_config.settings import Settings
from tests.harness import LOG_DIR, MASTER_KEY, REPO
from tests.reliability.helpers import SECRETS, SHORT, assert_error, assert_openai_error, auth
from tests.security.conftest import CLIENT_KEY, new_address

# What answers without a key: the probes and the admin UI's login page (and its static files).
ANONYMOUS = {"/health", "/health/liveliness", "/health/liveness", "/health/readiness", "/metrics", "/ui", "/login", "/v2/login",
             "/.well-known/litellm-ui-config", "/litellm/.well-known/litellm-ui-config", "/get/ui_theme_settings", "/get_image"}
# What a client key reaches on top: the OpenAI routes the product serves, one model's entry, Anthropic's Messages.
CLIENT = {"/v1/models/{model_id}", "/v1/messages", "/v1/messages/count_tokens",
          "/v1/chat/completions", "/chat/completions", "/v1/completions", "/completions", "/v1/embeddings", "/embeddings",
          "/v1/responses", "/responses", "/v1/models", "/models", "/engines/{model}/chat/completions",
          "/engines/{model}/completions", "/engines/{model}/embeddings", "/openai/deployments/{model}/chat/completions",
          "/openai/deployments/{model}/completions", "/openai/deployments/{model}/embeddings"}
DOCS = ("/openapi.json", "/redoc", "/routes", "/", "/public/providers", "/public/litellm_model_cost_map",
        "/mcp/openapi.json", "/mcp/docs")


@pytest.fixture(scope="module")
def routes(secure) -> list[tuple[str, str]]:
    spec = httpx.get(f"{secure.url}/openapi.json", headers=auth(MASTER_KEY), timeout=120).json()
    found = [(method.upper(), path) for path, ops in spec["paths"].items() for method in ops
             if method.upper() in ("GET", "POST", "PUT", "PATCH", "DELETE")]
    assert len(found) > 500  # LiteLLM's whole surface, not a stub
    return found


def sweep(gateway, routes, headers: dict, listener_url: str) -> dict[str, list[str]]:
    """(answered < 400, 5xx, not OpenAI-shaped) over every route."""
    out = {"answered": [], "server_error": [], "unshaped": []}
    with httpx.Client(base_url=gateway.url, timeout=60) as client:
        for method, path in routes:
            url = re.sub(r"\{[^}]+\}", "auto", path)
            body = {"model": "auto", "messages": SHORT} if path.endswith("/completions") else {
                "model": "auto", "input": "hi", "url": listener_url, "api_base": listener_url, "server_url": listener_url,
                "callback_url": listener_url}
            response = client.request(method, url, json=body if method in ("POST", "PUT", "PATCH") else None,
                                      headers={**headers, "X-Forwarded-For": new_address()})
            line = f"{method} {path} -> {response.status_code}"
            if response.status_code < 400:
                out["answered"].append(line)
                for secret in SECRETS:
                    assert secret not in response.text, line
            else:
                if response.status_code >= 500:
                    out["server_error"].append(line)
                try:
                    assert_error(response, response.status_code)
                except (AssertionError, KeyError, ValueError) as exc:
                    out["unshaped"].append(f"{line}: {str(exc)[:200]}")
    return out


def base(path: str) -> str:
    return "/ui" if path.startswith("/ui/") else path


@pytest.mark.parametrize("headers", [{}, auth("sk-wrong-0000000000000000")], ids=["no-key", "wrong-key"])
def test_without_a_valid_key_only_the_probes_and_the_ui_login_answer(secure, routes, listener, headers):
    result = sweep(secure, routes, headers, listener.url)
    assert [line for line in result["answered"] if base(line.split()[1]) not in ANONYMOUS] == []
    assert result["server_error"] == [] and result["unshaped"] == []
    assert listener.hits == []


def test_a_client_key_reaches_only_the_served_openai_routes(secure, routes, listener, ollama, deepseek):
    result = sweep(secure, routes, auth(CLIENT_KEY), listener.url)
    assert [line for line in result["answered"] if base(line.split()[1]) not in ANONYMOUS | CLIENT] == []
    assert result["server_error"] == [] and result["unshaped"] == []
    assert listener.hits == []


def test_endpoints_the_product_does_not_serve_are_404_even_for_the_master_key(secure, routes, listener):
    not_served = [(m, p) for m, p in routes if classify(p) is Access.NOT_SERVED]
    for prefix in ("/v1/files", "/v1/batches", "/v1/assistants", "/v1/vector_stores", "/v1/fine_tuning/jobs",
                   "/langfuse/", "/vertex_ai/", "/openai/", "/register", "/api/event_logging/batch", "/sso/"):
        assert any(p.startswith(prefix) for _, p in not_served), prefix
    with httpx.Client(base_url=secure.url, timeout=60) as client:
        for method, path in not_served:
            url = re.sub(r"\{[^}]+\}", "x", path).replace("*", "x")
            for headers in ({}, auth(MASTER_KEY), auth(CLIENT_KEY)):
                response = client.request(method, url, json={"url": listener.url} if method != "GET" else None,
                                          headers={**headers, "X-Forwarded-For": new_address()})
                error = assert_openai_error(response, 404)
                assert error["code"] == "not_served", (method, path)
    assert listener.hits == []


@pytest.mark.parametrize("path", DOCS)
def test_docs_need_the_master_key(secure, path):
    anonymous = httpx.get(f"{secure.url}{path}", headers={"X-Forwarded-For": new_address()}, timeout=60)
    assert_openai_error(anonymous, 401)
    client = httpx.get(f"{secure.url}{path}", headers=auth(CLIENT_KEY), timeout=60)
    assert assert_openai_error(client, 403)["code"] == "admin_key_required"
    master = httpx.get(f"{secure.url}{path}", headers=auth(MASTER_KEY), timeout=60)
    assert master.status_code < 400, (path, master.status_code)


def test_public_docs_setting_is_off_by_default():
    assert Settings().public_docs is False and Settings().trusted_proxies == ["127.0.0.1/32", "::1/128"]


# ------------------------------------------------------------------ kept from the issue 6 checks
def test_settings_and_shipped_env_allow_no_cross_origin_access():
    assert Settings().cors_origins == []
    shipped = dotenv_values(REPO / ".env.example").get("CORS_ORIGINS") or ""
    assert "*" not in shipped


def test_gateway_without_cors_origins_refuses_cross_origin_access(secure):
    preflight = httpx.options(f"{secure.url}/v1/chat/completions", timeout=10, headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    error = assert_openai_error(preflight, 400)
    assert "CORS_ORIGINS" in error["message"]
    assert "access-control-allow-origin" not in preflight.headers
    simple = httpx.get(f"{secure.url}/v1/models", headers={**auth(CLIENT_KEY), "Origin": "https://evil.example"}, timeout=10)
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


def test_size_limit_applies_to_every_endpoint(secure):
    big = b"\0" * (4 * 1024 * 1024 + 1)
    response = httpx.post(f"{secure.url}/v1/embeddings", headers=auth(CLIENT_KEY), timeout=30, content=big)
    assert assert_openai_error(response, 413)["code"] == "request_too_large"
    admin = httpx.post(f"{secure.url}/key/generate", headers=auth(MASTER_KEY), timeout=30, content=big)
    assert assert_openai_error(admin, 413)["code"] == "request_too_large"


def test_no_secret_in_any_gateway_log_of_the_session():
    logs = sorted(LOG_DIR.glob("*.log"))
    assert logs, f"no gateway logs under {LOG_DIR}"
    leaking = [path.name for path in logs for secret in (*SECRETS, CLIENT_KEY) if secret in path.read_text(errors="replace")]
    assert leaking == []
