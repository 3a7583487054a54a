"""Issue 6: schemathesis against the gateway's own OpenAPI description of POST /v1/chat/completions.

Schema-valid requests (positive) and schema-violating ones (negative) are generated from the
gateway's /openapi.json and sent with a valid key to the real gateway in front of the emulators
(positive cases get a configured model name, so some reach a backend and succeed).
No response may be a 5xx; every error must be OpenAI-shaped. Bounded and derandomized, so CI runs
the same examples each time.
"""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode

from tests.reliability.helpers import assert_openai_error, auth

EXAMPLES = 50
MODELS = ("auto", "deepseek-chat", "llama3.2:3b")


@pytest.fixture(scope="module")
def chat_operation(gateway):
    spec = httpx.get(f"{gateway.url}/openapi.json", headers=auth(), timeout=120).json()  # the docs need the master key
    operation = {**spec["paths"]["/v1/chat/completions"]["post"], "security": []}  # the key is ours, not generated
    paths = {"/v1/chat/completions": {"post": operation}}
    return schemathesis.openapi.from_dict({**spec, "paths": paths})["/v1/chat/completions"]["POST"]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["positive", "negative"])
def test_generated_chat_requests_never_get_a_5xx(gateway, ollama, deepseek, chat_operation, mode):
    seen: dict[int, int] = {}

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None, phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(case=chat_operation.as_strategy(generation_mode=mode))
    def run(case) -> None:
        if mode is GenerationMode.POSITIVE and isinstance(case.body, dict):
            case.body["model"] = MODELS[len(case.body.get("messages") or []) % len(MODELS)]  # a configured one
        response = case.call(base_url=gateway.url, headers=auth(), timeout=30)
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        assert response.status_code < 500, (response.status_code, response.text[:500], case.body)
        if response.status_code >= 400:
            headers = {name: values[0] for name, values in response.headers.items()}
            assert_openai_error(httpx.Response(response.status_code, headers=headers, content=response.content), response.status_code)

    run()
    assert sum(seen.values()) >= EXAMPLES // 2, seen
    if mode is GenerationMode.POSITIVE:
        assert seen.get(200, 0) >= 1, seen  # some generated requests were served end to end
    if mode is GenerationMode.NEGATIVE:
        assert set(seen) <= {400, 401, 404, 413, 422}, seen
