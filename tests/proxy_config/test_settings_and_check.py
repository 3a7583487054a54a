"""Settings loading (.env names, normalization) and `gateway check`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from custom_router.policy import Tier
from proxy_config.catalog import model_entries
from proxy_config.check import check_config
from proxy_config.settings import SettingsError, load_settings
from tests.harness import MASTER_KEY, REPO

GATEWAY = str(Path(sys.executable).with_name("gateway"))


def settings(env: dict | None = None, **overrides):
    return load_settings({"LITELLM_MASTER_KEY": MASTER_KEY, **(env or {})}, env_file=None,
                         config_path=overrides.pop("config_path", REPO / "config.yaml"), **overrides)


def test_defaults_follow_the_original_design():
    s = settings()
    assert (s.host, s.port, s.ollama_url, s.deepseek_url) == ("0.0.0.0", 8080, "http://localhost:11434", "https://api.deepseek.com")
    assert (s.rate_limit_requests, s.rate_limit_window, s.routing.complexity_threshold) == (100, 60, 500)


def test_full_deepseek_endpoint_url_from_the_original_env_example_works():
    assert settings({"DEEPSEEK_URL": "https://api.deepseek.com/v1/chat/completions"}).deepseek_url == "https://api.deepseek.com/v1"


def test_dotenv_file_is_read_and_process_environment_wins(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("PORT=9000\nOLLAMA_URL=http://10.0.0.5:11434/\nLOG_LEVEL=debug\n")
    s = load_settings({"PORT": "9100", "LITELLM_MASTER_KEY": MASTER_KEY}, env_file=env_file, config_path=REPO / "config.yaml")
    assert (s.port, s.ollama_url, s.log_level) == (9100, "http://10.0.0.5:11434", "DEBUG")


@pytest.mark.parametrize(("raw", "threshold", "unit"), [("800", 800, "chars"), ("2000tokens", 2000, "tokens"), ("300 chars", 300, "chars")])
def test_complexity_threshold_env_in_chars_or_tokens(raw, threshold, unit):
    routing = settings({"COMPLEXITY_THRESHOLD": raw}).routing
    assert (routing.complexity_threshold, routing.complexity_unit) == (threshold, unit)


@pytest.mark.parametrize(("env", "needle"), [
    ({"PORT": "eighty"}, "PORT"),
    ({"OLLAMA_URL": "localhost:11434"}, "OLLAMA_URL must be an http(s) URL"),
    ({"COMPLEXITY_THRESHOLD": "big"}, "COMPLEXITY_THRESHOLD='big' is not valid"),
])
def test_invalid_settings_name_the_variable(env, needle):
    with pytest.raises(SettingsError) as caught:
        settings(env)
    assert needle in str(caught.value)


def test_secrets_are_not_shown_in_repr():
    s = settings({"DEEPSEEK_API_KEY": "sk-very-secret-123456"})
    assert "sk-very-secret-123456" not in repr(s)


def test_tiers_come_from_config_not_names():
    entries = model_entries(yaml.safe_load((REPO / "config.yaml").read_text()))
    assert entries["deepseek-r1:7b"].tier is Tier.LOCAL
    assert entries["deepseek-chat"].tier is Tier.CLOUD and entries["auto"].tier is Tier.AUTO
    assert {name for name, e in entries.items() if e.tier is Tier.LOCAL} == {"qwen2.5:7b", "qwen2.5:3b", "llama3.2:3b", "mistral:7b", "deepseek-r1:7b",
                                                                                 "nomic-embed-text"}


def test_shipped_config_has_no_errors():
    assert [p for p in check_config(settings()) if p.level == "error"] == []


def entry(config: dict, name: str) -> dict:
    return next(item for item in config["model_list"] if item["model_name"] == name)


def test_local_default_env_override():
    assert settings({"LOCAL_DEFAULT_MODEL": "qwen2.5:3b"}).routing.local_default == "qwen2.5:3b"


def edited_config(tmp_path: Path, edit) -> Path:
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    edit(config)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_check_cli_fails_precisely_on_fallback_to_unknown_model(tmp_path):
    def edit(config):
        entry(config, "deepseek-reasoner")["model_info"]["fallback"] = "llama9:70b"
    path = edited_config(tmp_path, edit)
    result = subprocess.run([GATEWAY, "check", "--config", str(path)], capture_output=True, text=True,
                            env={"LITELLM_MASTER_KEY": MASTER_KEY, "PATH": "/usr/bin:/bin"}, cwd=tmp_path)
    assert result.returncode == 1
    assert "model 'deepseek-reasoner': model_info.fallback names unknown model 'llama9:70b'" in result.stderr


@pytest.mark.parametrize(("edit", "needle"), [
    (lambda c: c["router_settings"].update(fallbacks=[{"qwen2.5:7b": ["gpt-5"]}]), "router_settings.fallbacks: 'gpt-5' is not a model_name"),
    (lambda c: c["gateway_settings"].update(local_default="deepseek-chat"), "gateway_settings.local_default names 'deepseek-chat', which is tier cloud"),
    (lambda c: c["gateway_settings"].update(cloud_default="nope"), "gateway_settings.cloud_default names 'nope', which is not a model_name"),
    (lambda c: c["litellm_settings"].update(callbacks=["hooks.nothing_here.instance"]), "'hooks.nothing_here.instance' cannot be loaded"),
    (lambda c: c["model_list"][0]["model_info"].pop("gateway_tier"), "model_info.gateway_tier must be local, cloud or auto"),
    (lambda c: entry(c, "deepseek-chat")["model_info"].update(gateway_tier="local"), "is tier local but litellm_params.model 'deepseek/deepseek-chat' is not ollama_chat"),
])
def test_check_reports_each_config_mistake(tmp_path, edit, needle):
    problems = check_config(settings(config_path=edited_config(tmp_path, edit)))
    assert any(needle in p.message and p.level == "error" for p in problems), problems


def test_check_requires_a_master_key():
    s = load_settings({}, env_file=None, config_path=REPO / "config.yaml")
    assert any("LITELLM_MASTER_KEY is not set" in p.message for p in check_config(s))
