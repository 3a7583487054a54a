"""What Ollama reports about a model, compared with config.yaml, with plain data."""

from __future__ import annotations

from custom_router.policy import ModelEntry, Tier
from custom_router.reported import Reported, differences, parse_show

R1 = ModelEntry("deepseek-r1:7b", Tier.LOCAL, "deepseek-r1:7b", 8192, capabilities=frozenset({"json_schema", "thinking"}))


def test_parse_show_reads_capabilities_and_the_architecture_context_length():
    show = {"capabilities": ["completion", "thinking"], "model_info": {"general.architecture": "qwen2",
                                                                         "qwen2.context_length": 131072}}
    assert parse_show(show) == Reported(frozenset({"thinking"}), 131072)
    assert parse_show({"capabilities": "nonsense"}) == Reported(frozenset(), None)


def test_matching_config_has_no_differences():
    assert differences(R1, Reported(frozenset({"thinking"}), 131072)) == []


def test_every_disagreement_is_reported_with_what_to_change():
    found = differences(R1, Reported(frozenset({"tools"}), 4096))
    assert len(found) == 3
    assert "config.yaml says deepseek-r1:7b supports thinking, Ollama does not" in found[0]
    assert "Ollama reports tools for deepseek-r1:7b, config.yaml does not" in found[1]
    assert "plans deepseek-r1:7b with 8192 tokens (max_input_tokens), but the model was trained for 4096" in found[2]
