"""proxy_config.keys (where keys and limits come from) and the checks `gateway check` runs on them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from proxy_config.check import check_config
from proxy_config.keys import key_digest, key_id, load_keys
from proxy_config.settings import SettingsError, load_settings
from tests.harness import MASTER_KEY, REPO

ALPHA, BRAVO = "sk-unit-alpha-0123456789abcdef", "sk-unit-bravo-fedcba9876543210"


def settings_for(tmp_path: Path, gateway_keys: list | None = None, keys: list | None = None, **env: str):
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    if gateway_keys is not None:
        config["gateway_keys"] = gateway_keys
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    environ = {"LITELLM_MASTER_KEY": MASTER_KEY, "GATEWAY_CONFIG": str(config_path), **env}
    if keys is not None:
        (tmp_path / "keys.yaml").write_text(yaml.safe_dump({"keys": keys}))
        environ["KEYS_FILE"] = str(tmp_path / "keys.yaml")
    return load_settings(environ=environ, env_file=None)


def test_api_keys_get_the_default_limits_and_hashed_names(tmp_path):
    table = load_keys(settings_for(tmp_path, API_KEYS=f"{ALPHA}, {BRAVO}", RATE_LIMIT_REQUESTS="7"))
    alpha = table.lookup(ALPHA)
    assert (alpha.name, alpha.requests, alpha.window, alpha.tpm) == (f"key-{key_digest(ALPHA)[:8]}", 7, 60, None)
    assert alpha.id == key_id(key_digest(ALPHA)) == f"sha256:{key_digest(ALPHA)[:8]}"
    assert table.lookup("sk-unit-unknown-000000000000") is None
    assert table.is_master(MASTER_KEY) and not table.is_master(ALPHA)


def test_keys_file_overrides_config_which_overrides_api_keys(tmp_path):
    settings = settings_for(
        tmp_path,
        gateway_keys=[{"name": "from-config", "key": ALPHA, "rate_limit_requests": 50, "rate_limit_tpm": 1000}],
        keys=[{"name": "from-file", "key": ALPHA, "rate_limit_window": 30}],
        API_KEYS=ALPHA,
    )
    alpha = load_keys(settings).lookup(ALPHA)
    assert (alpha.name, alpha.requests, alpha.window, alpha.tpm, alpha.secret) == ("from-file", 50, 30, 1000, ALPHA)


def test_keys_file_entries_by_sha256_and_environment_reference(tmp_path):
    keys = [{"name": "hashed", "sha256": key_digest(BRAVO)}, {"name": "env", "key": "os.environ/UNIT_ALPHA"}]
    table = load_keys(settings_for(tmp_path, keys=keys), environ={"UNIT_ALPHA": ALPHA})
    assert (table.lookup(BRAVO).name, table.lookup(BRAVO).secret) == ("hashed", None)
    assert table.lookup(ALPHA).name == "env"


@pytest.mark.parametrize(("entry", "message"), [
    ({"name": "both", "key": ALPHA, "sha256": key_digest(ALPHA)}, "set exactly one of key or sha256"),
    ({"key": ALPHA, "rate_limit_requests": 0}, "keys.0.rate_limit_requests"),
    ({"key": ALPHA, "limit": 5}, "keys.0.limit"),
    ({"key": "os.environ/UNIT_MISSING"}, "UNIT_MISSING is not set"),
])
def test_invalid_keys_file_entries_are_named(tmp_path, entry, message):
    with pytest.raises(SettingsError, match="KEYS_FILE") as caught:
        load_keys(settings_for(tmp_path, keys=[entry]), environ={})
    assert message in str(caught.value)
    assert ALPHA not in str(caught.value)


def test_missing_keys_file_is_an_error(tmp_path):
    settings = settings_for(tmp_path, KEYS_FILE=str(tmp_path / "nope.yaml"))
    with pytest.raises(SettingsError, match="does not exist"):
        load_keys(settings)


def errors_of(settings) -> list[str]:
    return [p.message for p in check_config(settings) if p.level == "error"]


def test_check_refuses_several_workers_without_redis(tmp_path):
    assert any("without Redis" in m for m in errors_of(settings_for(tmp_path, API_KEYS=ALPHA, WORKERS="2")))
    assert not any("without Redis" in m for m in errors_of(settings_for(tmp_path, API_KEYS=ALPHA, WORKERS="2",
                                                                        REDIS_URL="redis://127.0.0.1:6379/0")))
    assert not any("without Redis" in m for m in errors_of(settings_for(tmp_path, WORKERS="2")))  # no client keys


def test_check_refuses_a_client_key_equal_to_the_master_key(tmp_path):
    assert any("equals LITELLM_MASTER_KEY" in m for m in errors_of(settings_for(tmp_path, API_KEYS=MASTER_KEY)))


def test_check_requires_the_custom_auth_line_for_client_keys(tmp_path):
    settings = settings_for(tmp_path, API_KEYS=ALPHA)
    config = yaml.safe_load(settings.config_path.read_text())
    del config["general_settings"]["custom_auth"]
    settings.config_path.write_text(yaml.safe_dump(config))
    assert any("custom_auth" in m for m in errors_of(settings))


def test_check_warns_about_query_keys(tmp_path):
    problems = check_config(settings_for(tmp_path, API_KEYS=ALPHA, ALLOW_QUERY_API_KEY="true"))
    assert [p.level for p in problems if "ALLOW_QUERY_API_KEY" in p.message] == ["warning"]
