"""Fixtures for the cost-control tests: one gateway with 2 workers, a real redis-server, the
response cache on (RESPONSE_CACHE_TTL) and client keys with monthly cloud budgets.

The config raises deepseek-chat's prices (CLOUD_IN/CLOUD_OUT per token), so a budget of a few
cents is reached by a few scripted cloud requests; tests compute the expected costs from the
usage each response reports and these prices.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.harness import DEEPSEEK_KEY, REPO, Gateway
from tests.redis_server import RedisServer

KEY_A = "sk-cost-test-alpha-4c8e2a6f0b9d1357"
KEY_B = "sk-cost-test-bravo-7d1b5f9a3e0c2468"
KEY_BUDGET = "sk-cost-test-budget-2e6a0c4f8b1d3579"
KEY_OTHER = "sk-cost-test-other-9f3b7d1e5a2c4680"
KEY_REPORT = "sk-cost-test-report-5a9c3e7f1b0d2468"  # only test_report_e2e sends with it: its ledger rows are known
BUDGET_USD = 0.05  # a few cents: three complex cloud requests at the test prices
DEFAULT_BUDGET_USD = 10.0  # KEY_CLOUD_BUDGET_USD: every other client key
CLOUD_IN, CLOUD_OUT = 0.0001, 0.0002  # USD per token for deepseek-chat in the test config
TTL = 300


def write_cost_config(directory: Path) -> Path:
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    for entry in config["model_list"]:
        if entry["model_name"] == "deepseek-chat":
            entry["model_info"] = {**entry["model_info"], "input_cost_per_token": CLOUD_IN,
                                   "output_cost_per_token": CLOUD_OUT, "cache_read_input_token_cost": CLOUD_IN}
    # the emulators share this loaded 2-core machine: a 1 s health poll can time out and mark Ollama down
    config["gateway_settings"] = {**config["gateway_settings"], "health_timeout_seconds": 5}
    config["gateway_keys"] = [{"name": "budgeted", "key": KEY_BUDGET, "cloud_budget_usd": BUDGET_USD},
                              {"name": "other", "key": KEY_OTHER}]
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture(scope="package")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer("cost").start()
    yield server
    server.stop()


@pytest.fixture(scope="package")
def cost_gateway(ollama, deepseek, redis_server, tmp_path_factory) -> Iterator[Gateway]:
    directory = tmp_path_factory.mktemp("cost")
    env = {"OLLAMA_URL": ollama.url, "DEEPSEEK_URL": deepseek.url, "DEEPSEEK_API_KEY": DEEPSEEK_KEY,
           "API_KEYS": f"{KEY_A},{KEY_B},{KEY_REPORT}", "REDIS_URL": redis_server.url, "RESPONSE_CACHE_TTL": str(TTL),
           "KEY_CLOUD_BUDGET_USD": str(DEFAULT_BUDGET_USD), "RATE_LIMIT_REQUESTS": "1000",
           "DATA_DIR": str(directory / "data")}
    gw = Gateway("cost", env, config=write_cost_config(directory), workers=2)
    yield gw.wait_ready(timeout=240)
    gw.stop()
