"""Every coupling to LiteLLM holds on the installed release: one test per shim target, per error
wording and per private attribute (litellm_compat). scripts/try-litellm.sh runs this file against
another LiteLLM release; a failure names the shim or wording that no longer holds.
"""

from __future__ import annotations

import pytest

from litellm_compat import shims, wording


@pytest.fixture(scope="module", autouse=True)
def _local_cost_map(request):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # importing LiteLLM's proxy must not fetch from GitHub
        yield


@pytest.mark.parametrize("shim", shims.SHIMS, ids=lambda s: s.name)
def test_shim_target_holds(shim):
    assert shims.check(shim) is None


@pytest.mark.parametrize("item", wording.WORDINGS, ids=lambda w: w.name)
def test_wording_holds(item):
    assert wording.wording_problem(item) is None


@pytest.mark.parametrize("target", sorted(wording.PRIVATE_ATTRIBUTES))
def test_private_attributes_hold(target):
    assert wording.private_attribute_problem(target, wording.PRIVATE_ATTRIBUTES[target]) is None


def test_the_raw_model_name_key_is_litellms_own_constant():
    from litellm.constants import RETURN_RAW_MODEL_NAME_METADATA_KEY

    assert wording.RAW_MODEL_NAME_KEY is RETURN_RAW_MODEL_NAME_METADATA_KEY


def test_the_checks_can_fail():
    assert wording.wording_problem(wording.Wording("x", "no such text in LiteLLM 0xdeadbeef", "litellm.exceptions")) \
        == "litellm.exceptions no longer contains 'no such text in LiteLLM 0xdeadbeef'"
    assert wording.private_attribute_problem(wording.STREAM_WRAPPER, ("gateway_never_set_this",)) == \
        f"{wording.STREAM_WRAPPER} no longer sets gateway_never_set_this"
    assert shims.target_problem("litellm.nonexistent_module:x", ()).startswith("litellm.nonexistent_module cannot be imported")


def test_the_wording_matches_what_litellm_raises():
    """Built with LiteLLM's own exception classes: the predicates see through its wrapping."""
    import litellm

    refused = litellm.APIConnectionError(message="Cannot connect to host api.deepseek.com:443", llm_provider="deepseek",
                                         model="deepseek-chat")
    wrapped_bug = litellm.APIConnectionError(message="TypeError: expected str, got bytes", llm_provider="ollama",
                                             model="ollama_chat/qwen2.5:7b")
    cause = litellm.APIConnectionError(message="OllamaException - boom", llm_provider="ollama", model="m")
    cause.__cause__ = ConnectionRefusedError(111, "Connection refused")
    assert [wording.is_connect_failure(e) for e in (refused, wrapped_bug, cause, None)] == [True, False, True, False]
    line = litellm.BadRequestError(message="KeyError: 'message', Got unexpected response from Ollama: {'error': 'runner "
                                   "crashed'}", model="m", llm_provider="ollama")
    assert wording.is_ollama_error_line(line) is True
    assert wording.LITELLM_PREFIX.sub("", line.message).startswith("KeyError")
