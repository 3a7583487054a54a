"""Every secret `gateway serve` knows reaches the workers' log redactor, KEYS_FILE keys included."""

from __future__ import annotations

from proxy_config.keys import load_keys
from gateway.logs import SECRETS_ENV, Redactor, secrets_environment
from proxy_config.settings import load_settings
from tests.harness import MASTER_KEY, REPO


def test_keys_file_keys_are_redacted(tmp_path):
    keys_file = tmp_path / "keys.yaml"
    keys_file.write_text("keys:\n  - name: team-a\n    key: team-a-secret-key-42\n")
    settings = load_settings({"LITELLM_MASTER_KEY": MASTER_KEY, "KEYS_FILE": str(keys_file),
                              "REDIS_URL": "redis://:redis-pass-77@127.0.0.1:6379/0"},
                             env_file=None, config_path=REPO / "config.yaml")
    extra = [k.secret for k in load_keys(settings).keys.values() if k.secret]
    secrets = secrets_environment(settings, extra=extra)[SECRETS_ENV].split(",")
    assert {"team-a-secret-key-42", MASTER_KEY, "redis-pass-77"} <= set(secrets)
    line = Redactor(secrets)("auth ok for team-a-secret-key-42 via redis-pass-77")
    assert "team-a-secret-key-42" not in line and "redis-pass-77" not in line
    assert line.count("[redacted sha256:") == 2
