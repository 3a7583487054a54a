"""`gateway backup` / `gateway restore`: a real round trip of the SQLite ledger (written by the
gateway's own LedgerWriter), of PostgreSQL (pg_dump/pg_restore against a throwaway cluster), and
of config.yaml and the env file; plus retention, the sha256 check and the refusals.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import subprocess
import time
from pathlib import Path

import pytest

from hooks.ledger_store import LedgerWriter, SqliteStore
from proxy_config.backup import pg_command
from tests.harness import GATEWAY_BIN, MASTER_KEY, REPO
from tests.observability.conftest import postgres_url  # noqa: F401  (the throwaway PostgreSQL fixture)
from tests.observability.helpers import ledger_row


def _row(i: int) -> tuple:
    return ledger_row(i, time.time(), key_hash="sha256:0badcafe", latency_ms=10.0, saved_usd=6.58e-06)


def gateway(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    base = {"PATH": os.environ["PATH"], "LITELLM_MASTER_KEY": MASTER_KEY, "GATEWAY_CONFIG": str(cwd / "etc/config.yaml")}
    return subprocess.run([str(GATEWAY_BIN), *args], capture_output=True, text=True, cwd=cwd, env={**base, **env}, timeout=300)


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """A gateway host in miniature: config.yaml, an env file with a secret, and a ledger with 3 rows."""
    (tmp_path / "etc").mkdir()
    shutil.copy(REPO / "config.yaml", tmp_path / "etc/config.yaml")
    (tmp_path / "etc/env").write_text(f"LITELLM_MASTER_KEY='{MASTER_KEY}'\n")
    writer = LedgerWriter(SqliteStore(tmp_path / "data/ledger.sqlite3"), on_error=lambda *a: pytest.fail(f"ledger error {a}"))
    for i in range(3):
        writer.put(_row(i))
    writer.close()
    return tmp_path


def ledger_ids(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return sorted(r[0] for r in conn.execute("SELECT request_id FROM gateway_requests"))
    finally:
        conn.close()


def _delete(path: Path, where: str) -> None:
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(f"DELETE FROM gateway_requests WHERE {where}")  # noqa: S608 - test literals
    conn.close()


def test_sqlite_ledger_config_and_env_round_trip(host: Path) -> None:
    made = gateway(host, "backup", "--out", "backups", "--env-file", "etc/env", DATA_DIR="data")
    assert made.returncode == 0, made.stderr
    folder = Path(made.stdout.strip().removeprefix("backup written to "))
    assert sorted(p.name for p in folder.iterdir()) == ["MANIFEST.json", "config.yaml", "env", "ledger.sqlite3"]
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700 and stat.S_IMODE((folder / "env").stat().st_mode) == 0o600
    assert MASTER_KEY not in made.stdout + made.stderr
    # Disaster: the ledger loses rows, config and env are damaged.
    _delete(host / "data/ledger.sqlite3", "request_id != 'r0'")
    (host / "etc/env").write_text("broken\n")
    (host / "etc/config.yaml").write_text((REPO / "config.yaml").read_text() + "\n# edited\n")
    refused = gateway(host, "restore", str(folder), DATA_DIR="data")
    assert refused.returncode == 1 and "--yes" in refused.stderr
    restored = gateway(host, "restore", str(folder), "--yes", DATA_DIR="data")
    assert restored.returncode == 0, restored.stderr
    assert ledger_ids(host / "data/ledger.sqlite3") == ["r0", "r1", "r2"]
    # Restore read the backup without leaving SQLite's -wal/-shm files in it.
    assert sorted(p.name for p in folder.iterdir()) == ["MANIFEST.json", "config.yaml", "env", "ledger.sqlite3"]
    assert (host / "etc/env").read_text() == f"LITELLM_MASTER_KEY='{MASTER_KEY}'\n"
    assert (host / "etc/config.yaml").read_text() == (REPO / "config.yaml").read_text()


def test_restore_gives_each_file_back_its_mode_and_owner(host: Path) -> None:
    """A restore as root must leave config.yaml readable by the service group and the ledger the
    service user's, as they were: not root-owned copies the service cannot read or write."""
    os.chmod(host / "etc/config.yaml", 0o640)
    os.chmod(host / "etc/env", 0o600)
    owner = (65534, 65534) if os.geteuid() == 0 else (os.getuid(), os.getgid())  # nobody:nogroup when root
    os.chown(host / "data/ledger.sqlite3", *owner)
    made = gateway(host, "backup", "--out", "backups", "--env-file", "etc/env", DATA_DIR="data")
    assert made.returncode == 0, made.stderr
    folder = Path(made.stdout.strip().removeprefix("backup written to "))
    manifest = json.loads((folder / "MANIFEST.json").read_text())["files"]
    assert (manifest["config.yaml"]["mode"], manifest["env"]["mode"]) == ("0640", "0600")
    (host / "data/ledger.sqlite3").unlink()
    (host / "etc/config.yaml").unlink()  # replaced by a root-only copy, as an editor might leave it
    (host / "etc/config.yaml").write_text((REPO / "config.yaml").read_text() + "\n# edited\n")
    os.chmod(host / "etc/config.yaml", 0o600)
    restored = gateway(host, "restore", str(folder), "--yes", DATA_DIR="data")
    assert restored.returncode == 0, restored.stderr
    assert stat.S_IMODE((host / "etc/config.yaml").stat().st_mode) == 0o640
    assert stat.S_IMODE((host / "etc/env").stat().st_mode) == 0o600
    ledger = (host / "data/ledger.sqlite3").stat()
    assert (ledger.st_uid, ledger.st_gid) == owner
    assert ledger_ids(host / "data/ledger.sqlite3") == ["r0", "r1", "r2"]


def test_restore_refuses_a_backup_whose_sha256_does_not_match(host: Path) -> None:
    folder = Path(gateway(host, "backup", "--out", "backups", DATA_DIR="data").stdout.strip().removeprefix("backup written to "))
    with (folder / "ledger.sqlite3").open("ab") as handle:  # a damaged copy
        handle.write(b"\0" * 512)
    _delete(host / "data/ledger.sqlite3", "request_id = 'r2'")
    result = gateway(host, "restore", str(folder), "--yes", DATA_DIR="data")
    assert result.returncode == 1 and "does not match its sha256" in result.stderr and "nothing was restored" in result.stderr
    assert ledger_ids(host / "data/ledger.sqlite3") == ["r0", "r1"]


def test_retention_keeps_the_newest_backups(host: Path) -> None:
    made = []
    for _ in range(3):
        result = gateway(host, "backup", "--out", "backups", "--keep", "2", DATA_DIR="data")
        assert result.returncode == 0, result.stderr
        made.append(result.stdout.strip().removeprefix("backup written to "))
        time.sleep(1.1)  # stamps have one-second resolution
    assert sorted(str(p) for p in (host / "backups").iterdir()) == sorted(made[1:])


def test_nothing_to_back_up_is_an_error_that_says_what_to_check(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    shutil.copy(REPO / "config.yaml", tmp_path / "etc/config.yaml")
    result = gateway(tmp_path, "backup", "--out", "backups", DATA_DIR="nowhere")
    assert result.returncode == 1 and "nothing to back up" in result.stderr and "DATA_DIR" in result.stderr
    assert not (tmp_path / "backups").exists() or list((tmp_path / "backups").iterdir()) == []


def test_pg_password_goes_through_the_environment_not_the_command_line() -> None:
    url, env = pg_command("postgresql://litellm:s%40cret-pass@127.0.0.1:5432/litellm")
    assert url == "postgresql://litellm@127.0.0.1:5432/litellm" and env["PGPASSWORD"] == "s@cret-pass"


def psql(url: str, sql: str) -> str:
    result = subprocess.run(["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_postgres_round_trip_with_pg_dump_and_pg_restore(postgres_url: str, tmp_path: Path) -> None:  # noqa: F811
    (tmp_path / "etc").mkdir()
    shutil.copy(REPO / "config.yaml", tmp_path / "etc/config.yaml")
    psql(postgres_url, 'CREATE TABLE "LiteLLM_VerificationToken" (token text PRIMARY KEY, spend double precision);'
                       "INSERT INTO \"LiteLLM_VerificationToken\" VALUES ('hashed-a', 1.5), ('hashed-b', 0.25);")
    # DB mode's `gateway check` wants Prisma; backup only needs settings, so no check runs here.
    made = gateway(tmp_path, "backup", "--out", "backups", DATA_DIR="data", DATABASE_URL=postgres_url)
    assert made.returncode == 0, made.stderr
    folder = Path(made.stdout.strip().removeprefix("backup written to "))
    assert json.loads((folder / "MANIFEST.json").read_text())["files"].keys() == {"postgres.dump", "config.yaml"}
    psql(postgres_url, "DELETE FROM \"LiteLLM_VerificationToken\" WHERE token = 'hashed-b';"
                       "UPDATE \"LiteLLM_VerificationToken\" SET spend = 99;")
    restored = gateway(tmp_path, "restore", str(folder), "--yes", DATA_DIR="data", DATABASE_URL=postgres_url)
    assert restored.returncode == 0, restored.stderr
    assert psql(postgres_url, 'SELECT token, spend FROM "LiteLLM_VerificationToken" ORDER BY token') == "hashed-a|1.5\nhashed-b|0.25"
