"""Unit tests of the pieces behind issue 17: the one key parser, the route policy, the error
scrubber, the health predicate and the cost guards."""

from __future__ import annotations

import litellm
import pytest

from hooks.auth import presented_key
from litellm_compat.wording import is_connect_failure as is_connection_failure
from proxy_config.chat_checks import RequestRejected, check_n, check_served_model
from gateway.errors import clean_message, fragments_pattern
from gateway.gate import Access, classify
from proxy_config.settings import Settings, SettingsError, load_settings


def headers(**values: str) -> list[tuple[bytes, bytes]]:
    return [(name.replace("_", "-").encode(), value.encode()) for name, value in values.items()]


@pytest.mark.parametrize("given,expected", [
    (headers(authorization="Bearer k1"), "k1"),
    (headers(x_api_key="k2"), "k2"),
    (headers(api_key="k3"), "k3"),
    (headers(x_goog_api_key="k4"), "k4"),
    (headers(ocp_apim_subscription_key="k5"), "k5"),
    (headers(x_litellm_api_key="Bearer k6"), "k6"),
    # LiteLLM's precedence: x-litellm-api-key first, then Authorization, then api-key, x-api-key, ...
    (headers(authorization="Bearer junk", x_litellm_api_key="real"), "real"),
    (headers(x_api_key="second", authorization="Bearer first"), "first"),
    (headers(x_goog_api_key="goog", api_key="azure"), "azure"),
    (headers(authorization="Basic b64"), "b64"),
    (headers(authorization="junk-without-scheme"), None),  # LiteLLM reads no key there
    ([], None),
])
def test_presented_key_follows_litellms_header_precedence(given, expected):
    assert presented_key(given, "/v1/chat/completions") == expected


def test_presented_key_takes_the_first_of_repeated_headers():
    assert presented_key([(b"authorization", b"Bearer one"), (b"Authorization", b"Bearer two")], "/v1/models") == "one"


@pytest.mark.parametrize("path,access", [
    ("/v1/chat/completions", Access.API), ("/engines/auto/chat/completions", Access.API), ("/key/generate", Access.API),
    ("/v1/files", Access.NOT_SERVED), ("/v1/vector_stores/x/search", Access.NOT_SERVED), ("/v1/assistants", Access.NOT_SERVED),
    ("/langfuse/api/public/ingestion", Access.NOT_SERVED), ("/openai/v1/chat/completions", Access.NOT_SERVED),
    ("/v1beta/models/x:generateContent", Access.NOT_SERVED), ("/api/event_logging/batch", Access.NOT_SERVED),
    ("/register", Access.NOT_SERVED), ("/sso/cli/start", Access.NOT_SERVED), ("/v1/audio/transcriptions", Access.NOT_SERVED),
    ("/openapi.json", Access.DOCS), ("/", Access.DOCS), ("/public/providers", Access.DOCS), ("/mcp/docs", Access.DOCS),
    ("/health", Access.PROBE), ("/metrics", Access.PROBE), ("/ui/", Access.UI), ("/login", Access.UI),
])
def test_route_policy(path, access):
    assert classify(path) is access


def test_secret_fragments_are_scrubbed_from_upstream_text():
    key = "sk-live-0a9b8c7d6e5f4a3b2c1d"
    pattern = fragments_pattern([key])
    assert pattern.sub("***", "Your api key: ****2c1d is invalid") == "Your api key: ******* is invalid"
    assert pattern.sub("***", f"key {key[:10]}... rejected") == "key ***... rejected"
    assert pattern.sub("***", "the 2c1dx and 4a3b are fine") == "the 2c1dx and 4a3b are fine"  # not an end or a start
    assert "2c1d" not in clean_message("DeepseekException - {\"error\": {\"message\": \"Your api key: ****2c1d is invalid\"}}")


def test_a_wrapped_type_error_is_not_a_connection_failure():
    wrapped = litellm.APIConnectionError(message="TypeError: expected str, got bytes", llm_provider="deepseek", model="deepseek-chat")
    assert is_connection_failure(wrapped) is False
    refused = litellm.APIConnectionError(message="Cannot connect to host api.deepseek.com:443", llm_provider="deepseek",
                                         model="deepseek-chat")
    assert is_connection_failure(refused) is True


def test_model_must_be_a_configured_group():
    check_served_model("auto", {"auto", "deepseek-chat"})
    with pytest.raises(RequestRejected) as caught:
        check_served_model("deepseek/deepseek-chat", {"auto", "deepseek-chat"})
    assert (caught.value.status, caught.value.code, caught.value.param) == (404, "model_not_found", "model")


def test_n_cap_names_the_cap():
    check_n({"n": 4}, "deepseek-chat", {"deepseek-chat": 4})
    check_n({"n": 9}, "unknown", {"deepseek-chat": 4})  # no cap known: the model check answers first
    with pytest.raises(RequestRejected) as caught:
        check_n({"n": 2}, "auto", {"auto": 1})
    assert caught.value.param == "n" and "at most 1" in caught.value.message


def test_security_settings_defaults_and_validation(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("model_list: []\n")
    settings = Settings()
    assert (settings.trusted_proxies, settings.public_docs, settings.anon_rate_limit_requests) == (["127.0.0.1/32", "::1/128"], False, 60)
    assert (settings.routing.max_n_local, settings.routing.max_n_cloud) == (1, 4)
    env = {"GATEWAY_CONFIG": str(config)}
    assert load_settings({**env, "TRUSTED_PROXIES": "none"}, env_file=None).trusted_proxies == []
    assert load_settings({**env, "TRUSTED_PROXIES": "10.0.0.0/8, 192.168.1.5"}, env_file=None).trusted_proxies == ["10.0.0.0/8", "192.168.1.5"]
    with pytest.raises(SettingsError, match="TRUSTED_PROXIES entry 'nginx'"):
        load_settings({**env, "TRUSTED_PROXIES": "nginx"}, env_file=None)


def test_fields_that_skip_litellms_banned_field_check_are_not_banned():
    from litellm.proxy.auth import auth_utils

    from gateway.gate import OPENAI_FIELDS, litellm_banned_fields

    assert OPENAI_FIELDS & set(auth_utils._BANNED_REQUEST_BODY_PARAMS) == set()
    assert OPENAI_FIELDS & {"metadata", "litellm_metadata", "extra_body", "litellm_embedding_config", "fallbacks",
                            "user_config", "model_list"} == set()
    with pytest.raises(RequestRejected) as caught:
        litellm_banned_fields({"model": "auto", "metadata": {"api_base": "http://127.0.0.1:9"}}, "/v1/chat/completions")
    assert (caught.value.status, caught.value.param) == (400, "api_base")
