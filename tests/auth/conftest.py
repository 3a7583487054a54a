"""Fixtures for the key, rate-limit and DB-mode tests: real redis-server processes and gateways.

`RedisServer` (tests.redis_server) runs redis-server on a free loopback port without
persistence, so a restart comes back empty (the outage test relies on it). `limited` and
`second` are gateways with client keys sharing one Redis; the keys they use are the
constants below, which test_secrets_in_logs.py greps every gateway log for.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.harness import DEEPSEEK_KEY, LOG_DIR, Gateway
from tests.redis_server import RedisServer

SESSION_START = time.time()
LIMIT = 10  # RATE_LIMIT_REQUESTS of the shared gateways, per 60 s
KEY_A = "sk-auth-test-alpha-8d1f4c2b9e7a6350"
KEY_B = "sk-auth-test-bravo-3e9a7c1d5b2f8046"
KEY_C = "sk-auth-test-charlie-6b2d9f0e4a8c1735"
KEY_QUERY = "sk-auth-test-query-1c7e5a3f9d2b4860"
KEY_VIP = "team-vip-4f8b2d6a0c9e1357"  # not sk-shaped: a redactor's pattern cannot hide a leak of it
KEY_TPM = "sk-auth-test-tokens-9a3c5e7b1d0f2468"
KEY_OUTAGE = "sk-auth-test-outage-5d0b8f2a6c4e1379"
KEY_PROBE = "sk-auth-test-probe-2a6e0c8f4b1d3957"
KEY_STALL = "sk-auth-test-stall-7e1a9c3f5b0d2846"
TEST_KEYS = (KEY_A, KEY_B, KEY_C, KEY_QUERY, KEY_VIP, KEY_TPM, KEY_OUTAGE, KEY_PROBE, KEY_STALL)
VIP_LIMIT = 3
TPM_LIMIT = 20


@pytest.fixture(scope="package")
def shared_redis() -> Iterator[RedisServer]:
    server = RedisServer("shared").start()
    yield server
    server.stop()


@pytest.fixture
def fresh_redis(shared_redis) -> RedisServer:
    """The shared Redis, emptied: every test starts with untouched limits."""
    shared_redis.client().flushall()
    return shared_redis


def write_keys_file(directory: Path) -> Path:
    entries = [
        {"name": "vip", "key": KEY_VIP, "rate_limit_requests": VIP_LIMIT},
        {"name": "metered", "key": "os.environ/AUTH_TEST_TPM_KEY", "rate_limit_tpm": TPM_LIMIT},
        {"name": "query-user", "key": KEY_QUERY},
    ]
    path = directory / "keys.yaml"
    path.write_text(yaml.safe_dump({"keys": entries}))
    return path


def gateway_env(ollama, deepseek, redis_url: str | None, keys_file: Path | None = None, **extra: str) -> dict[str, str]:
    env = {
        "OLLAMA_URL": ollama.url, "DEEPSEEK_URL": deepseek.url, "DEEPSEEK_API_KEY": DEEPSEEK_KEY,
        "API_KEYS": f"{KEY_A},{KEY_B},{KEY_C}", "RATE_LIMIT_REQUESTS": str(LIMIT), "RATE_LIMIT_WINDOW": "60",
        "AUTH_TEST_TPM_KEY": KEY_TPM, **extra,
    }
    if redis_url:
        env["REDIS_URL"] = redis_url
    if keys_file:
        env["KEYS_FILE"] = str(keys_file)
    return env


@pytest.fixture(scope="package")
def keys_file(tmp_path_factory) -> Path:
    return write_keys_file(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="package")
def limited(ollama, deepseek, shared_redis, keys_file) -> Iterator[Gateway]:
    """Two workers, Redis, 10 requests per 60 s per key, ?api_key= allowed."""
    env = gateway_env(ollama, deepseek, shared_redis.url, keys_file, ALLOW_QUERY_API_KEY="true")
    gw = Gateway("auth-limited", env, workers=2)
    yield gw.wait_ready()
    gw.stop()


@pytest.fixture(scope="package")
def second(ollama, deepseek, shared_redis, keys_file) -> Iterator[Gateway]:
    """A separate gateway process on the same Redis and keys (?api_key= not allowed)."""
    gw = Gateway("auth-second", gateway_env(ollama, deepseek, shared_redis.url, keys_file))
    yield gw.wait_ready()
    gw.stop()


def auth_header(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def session_logs() -> list[Path]:
    """Every log written under LOG_DIR during this test session."""
    return [p for p in LOG_DIR.glob("*.log") if p.stat().st_mtime >= SESSION_START - 1]


def environ_without_gateway_vars() -> dict[str, str]:
    prefixes = ("DEEPSEEK", "OLLAMA", "API_KEYS", "LITELLM_MASTER", "REDIS", "DATABASE_URL", "KEYS_FILE", "RATE_LIMIT")
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
