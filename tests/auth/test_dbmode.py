"""DB mode: config switching, refusal without a Prisma client, and `gateway keys sync` against a stub key API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from emulators._common import serve_in_thread
from proxy_config import dbmode
from proxy_config.keys import key_digest
from proxy_config.settings import load_settings
from tests.auth.conftest import environ_without_gateway_vars
from tests.auth.key_api import KeyApi
from tests.harness import GATEWAY_BIN, MASTER_KEY, REPO

DB_PASSWORD = "pg-secret-7c1e9a3b"
DATABASE_URL = f"postgresql://gateway:{DB_PASSWORD}@127.0.0.1:5/litellm"
SYNC_A, SYNC_B = "sk-sync-alpha-5e2c8a0f4d6b1937", "sk-sync-bravo-1b9d3f7a5c0e2468"
SHORT_KEY, HASHED_KEY = "sk-short", "sk-sync-hashed-only-8f6d4b2a0c1e3579"


def gateway(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {**environ_without_gateway_vars(), "LITELLM_MASTER_KEY": MASTER_KEY, **env}
    return subprocess.run([str(GATEWAY_BIN), *args, "--config", str(REPO / "config.yaml")], cwd=cwd, env=environ,
                          capture_output=True, text=True, timeout=120)


def test_render_config_swaps_custom_auth_for_the_database(tmp_path):
    settings = load_settings(environ={"DATABASE_URL": DATABASE_URL, "DATA_DIR": str(tmp_path), "UI_USERNAME": "boss",
                                      "UI_PASSWORD": "ui-pass-1234", "GATEWAY_CONFIG": str(REPO / "config.yaml")},
                             env_file=None)
    rendered = dbmode.render_config(settings)
    config = yaml.safe_load(rendered.read_text())
    original = yaml.safe_load((REPO / "config.yaml").read_text())
    assert rendered.parent == tmp_path
    assert "custom_auth" not in config["general_settings"]
    assert config["general_settings"]["database_url"] == "os.environ/DATABASE_URL"
    assert config["model_list"] == original["model_list"]
    assert DB_PASSWORD not in rendered.read_text()
    env = dbmode.environment(settings, rendered)
    assert env == {"DATABASE_URL": DATABASE_URL, "CONFIG_FILE_PATH": str(rendered), "UI_USERNAME": "boss",
                   "UI_PASSWORD": "ui-pass-1234"}


def test_serve_refuses_db_mode_without_the_prisma_package(tmp_path):
    result = gateway("serve", cwd=tmp_path, DATABASE_URL=DATABASE_URL)
    assert result.returncode == 1
    assert "the Python package prisma is not installed" in result.stderr
    assert f"pip install {dbmode.PRISMA_PIN}" in result.stderr
    assert "prisma generate --schema" in result.stderr and "litellm/proxy/schema.prisma" in result.stderr
    assert DB_PASSWORD not in result.stdout + result.stderr


def test_prisma_client_that_is_installed_but_not_generated_is_detected(tmp_path):
    stub = tmp_path / "site" / "prisma"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text(  # what prisma-client-py does before `prisma generate`
        "def __getattr__(name):\n"
        "    if name in {'Prisma', 'Client'}:\n"
        "        raise RuntimeError(\"The Client hasn't been generated yet, you must run `prisma generate`\")\n"
        "    raise AttributeError(name)\n"
    )
    problem = dbmode.prisma_problem(env={**os.environ, "PYTHONPATH": str(tmp_path / "site")})
    assert problem == "the Prisma client has not been generated (prisma generate was not run)"
    assert dbmode.prisma_problem() == "the Python package prisma is not installed"  # this machine


def test_provisioning_entry_point_names_the_schema_and_checks_the_client():
    schema = subprocess.run([sys.executable, "-m", "proxy_config.dbmode", "schema"],
                            capture_output=True, text=True, timeout=60)
    assert schema.returncode == 0
    assert Path(schema.stdout.strip()) == dbmode.litellm_schema()
    assert dbmode.litellm_schema().read_text().count('provider = "prisma-client-py"') == 1
    check = subprocess.run([sys.executable, "-m", "proxy_config.dbmode", "check"],
                           capture_output=True, text=True, timeout=60)
    assert (check.returncode, check.stderr.strip()) == (1, "the Python package prisma is not installed")


def test_serve_refuses_several_workers_without_redis(tmp_path):
    result = gateway("serve", "--workers", "2", cwd=tmp_path, API_KEYS=SYNC_A)
    assert result.returncode == 1
    assert "2 workers without Redis" in result.stderr and "REDIS_URL" in result.stderr


@pytest.fixture
def key_api() -> Iterator[tuple[KeyApi, str]]:
    api = KeyApi(MASTER_KEY)
    server = serve_in_thread(api.app)
    yield api, server.url
    server.stop()


def sync(url: str, cwd: Path, *args: str, **env: str) -> tuple[int, list[dict]]:
    keys_file = cwd / "keys.yaml"
    keys_file.write_text(yaml.safe_dump({"keys": [
        {"name": "bravo", "key": SYNC_B, "rate_limit_requests": 30, "rate_limit_window": 30, "rate_limit_tpm": 5000},
        {"name": "hashed", "sha256": key_digest(HASHED_KEY)},
    ]}))
    base = {"API_KEYS": f"{SYNC_A},{SHORT_KEY}", "KEYS_FILE": str(keys_file), "RATE_LIMIT_REQUESTS": "100"}
    result = gateway("keys", "sync", "--url", url, "--json", *args, cwd=cwd, **{**base, **env})
    for secret in (SYNC_A, SYNC_B, SHORT_KEY, MASTER_KEY):
        assert secret not in result.stdout + result.stderr
    return result.returncode, json.loads(result.stdout)


def actions(results: list[dict]) -> dict[str, str]:
    return {r["name"]: r["action"] for r in results}


def test_keys_sync_registers_static_keys_as_virtual_keys(key_api, tmp_path):
    api, url = key_api
    code, results = sync(url, tmp_path)
    assert code == 0
    assert actions(results) == {f"key-{key_digest(SYNC_A)[:8]}": "created", f"key-{key_digest(SHORT_KEY)[:8]}": "skipped",
                                "bravo": "created", "hashed": "skipped"}
    assert api.rows[key_digest(SYNC_A)]["rpm_limit"] == 100
    assert (api.rows[key_digest(SYNC_B)]["key_alias"], api.rows[key_digest(SYNC_B)]["rpm_limit"]) == ("bravo", 60)
    assert api.rows[key_digest(SYNC_B)]["tpm_limit"] == 5000
    assert not any(secret in u for u in api.urls for secret in (SYNC_A, SYNC_B))  # lookups by sha256 only

    code, again = sync(url, tmp_path)
    assert (code, actions(again)["bravo"], actions(again)[f"key-{key_digest(SYNC_A)[:8]}"]) == (0, "unchanged", "unchanged")


def test_keys_sync_updates_changed_limits_and_dry_run_changes_nothing(key_api, tmp_path):
    api, url = key_api
    sync(url, tmp_path)
    name_a = f"key-{key_digest(SYNC_A)[:8]}"
    code, planned = sync(url, tmp_path, "--dry-run", RATE_LIMIT_REQUESTS="40")
    assert (code, actions(planned)[name_a]) == (0, "would-update")
    assert api.rows[key_digest(SYNC_A)]["rpm_limit"] == 100
    code, applied = sync(url, tmp_path, RATE_LIMIT_REQUESTS="40")
    assert (code, actions(applied)[name_a], actions(applied)["bravo"]) == (0, "updated", "unchanged")
    assert api.rows[key_digest(SYNC_A)]["rpm_limit"] == 40


def test_keys_sync_fails_with_the_api_error_when_the_master_key_is_wrong(key_api, tmp_path):
    api, url = key_api
    code, results = sync(url, tmp_path, LITELLM_MASTER_KEY="sk-wrong-master-key-00000000")
    assert code == 1
    assert {r["action"] for r in results if r["name"] != "hashed"} == {"failed"}
    assert "HTTP 401" in results[0]["detail"]
    assert api.rows == {}
