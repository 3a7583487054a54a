"""Fixtures for the ledger, report, metrics, /health and log tests: gateways with their own DATA_DIR.

- `ledger_gateway`: 2 workers (metrics must sum across processes), both tiers up, a fresh
  DATA_DIR and `local_cost_per_1k_tokens` set so savings include the local cost;
- `readonly_gateway`: Ollama down, DeepSeek up, DATA_DIR *under a regular file*, so no
  process can create it: unlike chmod, this also holds for root (CI runs the tests as root);
  LOG_LEVEL=WARNING;
- `clouddown_gateway`: Ollama down and DeepSeek's URL refusing connections (key set);
- `postgres_url`: a throwaway PostgreSQL cluster (the server binaries of apt's postgresql).
Helpers (helpers.py) read the ledger with `gateway report` as a subprocess, the way an operator does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import DEEPSEEK_KEY, Gateway, dead_url, free_port, write_config

LOCAL_COST_PER_1K = 0.0001  # USD; below the cloud price, so local requests still save


@pytest.fixture(scope="module")
def ledger_gateway(ollama, deepseek, tmp_path_factory) -> Iterator[Gateway]:
    directory = tmp_path_factory.mktemp("ledger")
    config = write_config(directory, local_cost_per_1k_tokens=LOCAL_COST_PER_1K)
    gw = Gateway("ledger", {"OLLAMA_URL": ollama.url, "DEEPSEEK_URL": deepseek.url, "DEEPSEEK_API_KEY": DEEPSEEK_KEY,
                            "DATA_DIR": str(directory / "data")}, config=config, workers=2)
    yield gw.wait_ready()
    gw.stop()


@pytest.fixture(scope="module")
def readonly_gateway(deepseek, tmp_path_factory) -> Iterator[Gateway]:
    blocker = tmp_path_factory.mktemp("readonly") / "not-a-directory"
    blocker.write_text("a file where the data directory's parent should be\n")
    gw = Gateway("readonly", {"OLLAMA_URL": dead_url(), "DEEPSEEK_URL": deepseek.url, "DEEPSEEK_API_KEY": DEEPSEEK_KEY,
                              "DATA_DIR": str(blocker / "data"), "LOG_LEVEL": "WARNING"})
    yield gw.wait_ready()
    gw.stop()


@pytest.fixture(scope="module")
def clouddown_gateway(tmp_path_factory) -> Iterator[Gateway]:
    data = tmp_path_factory.mktemp("clouddown")
    gw = Gateway("clouddown", {"OLLAMA_URL": dead_url(), "DEEPSEEK_URL": dead_url(), "DEEPSEEK_API_KEY": DEEPSEEK_KEY,
                               "DATA_DIR": str(data)})
    yield gw.wait_ready()
    gw.stop()


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on a free loopback port (trust auth), as DATABASE_URL."""
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not versions:
        pytest.fail("PostgreSQL server binaries are not installed (apt-get install postgresql)")
    bindir = versions[-1].parent
    root = Path(tempfile.mkdtemp(prefix="gateway-pg-"))  # not under pytest's 0700 tmp: postgres must reach it
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_postgres:
        shutil.chown(root, "postgres")
    port = free_port()
    db, log = root / "db", root / "server.log"
    try:
        subprocess.run([*as_postgres, str(bindir / "initdb"), "-D", str(db), "-U", "gateway", "--auth=trust", "-E", "UTF8"],
                       check=True, capture_output=True, timeout=120)
        subprocess.run([*as_postgres, str(bindir / "pg_ctl"), "-D", str(db), "-l", str(log), "-w", "-t", "60", "-o",
                        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off", "start"],
                       check=True, capture_output=True, timeout=120)
        yield f"postgresql://gateway@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_postgres, str(bindir / "pg_ctl"), "-D", str(db), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)
