"""`gateway backup` and `gateway restore`: the ledger, PostgreSQL, config.yaml and the env file.

`gateway backup --out DIR` writes DIR/<UTC stamp>/ (0700; files 0600, they hold secrets) with:
- `ledger.sqlite3`: a consistent copy of DATA_DIR/ledger.sqlite3 through SQLite's online backup
  API (safe while the gateway writes), when that file exists;
- `postgres.dump`: `pg_dump --format=custom` of DATABASE_URL (LiteLLM's virtual keys and spend,
  the ledger in DB mode), when DATABASE_URL is set;
- `config.yaml`, and the env file given with `--env-file` (e.g. /etc/ai-gateway/env);
- `MANIFEST.json`: every file with its sha256, where it came from, and its mode and owner.
Then it keeps only the newest `--keep` backups in DIR. The Ansible backup role runs it from a
systemd timer; an off-host copy is that role's rsync step.

`gateway restore DIR/<stamp> --yes` checks every sha256 first, then puts each file back where the
manifest says (the ledger through the backup API, PostgreSQL with `pg_restore --clean --if-exists`),
with the mode and owner it had when it was backed up: config.yaml stays readable by the service
group, the ledger writable by the service user. Stop the gateway before restoring.

How it fails: exit 1 with a message saying what to do when DATA_DIR has no ledger and there is
no DATABASE_URL (nothing to back up), pg_dump/pg_restore is missing or fails (its stderr, with the
password never on the command line: it goes through PGPASSWORD), a manifest sha256 does not
match (nothing is restored), or `--yes` is missing. A half-written backup folder is removed.
Restoring as a user that cannot give a file back to its owner (not root) restores the content and
says which file to chown before starting the gateway.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from proxy_config.settings import Settings

SQLITE_FILE = "ledger.sqlite3"  # hooks.ledger_store.SQLITE_FILE (not imported: that pulls LiteLLM in)
MANIFEST = "MANIFEST.json"


class BackupError(RuntimeError):
    pass


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sqlite_copy(source: Path, dest: Path) -> None:
    """A consistent copy through SQLite's online backup API (works while a writer is active).

    The copy is switched out of WAL mode: a single self-contained file, which a read-only open
    (restore reads backups that way) does not grow -wal/-shm files next to. The gateway's ledger
    store puts its own file back into WAL mode when it opens it.
    """
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(dest)
    try:
        src.backup(dst)
        dst.execute("PRAGMA journal_mode=DELETE")
    finally:
        dst.close()
        src.close()


def file_meta(path: Path) -> dict[str, object]:
    """What restore needs to give a file back as it was: its mode and owner."""
    info = path.stat()
    return {"mode": f"{stat.S_IMODE(info.st_mode):04o}", "uid": info.st_uid, "gid": info.st_gid}


def put_back_meta(dest: Path, meta: dict) -> str | None:
    """Give `dest` the mode and owner recorded at backup time; a warning when it cannot (not root)."""
    if "mode" not in meta:  # a backup written before modes were recorded
        return None
    os.chmod(dest, int(meta["mode"], 8))
    info = dest.stat()
    if (info.st_uid, info.st_gid) != (meta["uid"], meta["gid"]):
        try:
            os.chown(dest, meta["uid"], meta["gid"])
        except PermissionError:
            return (f"warning: could not give {dest} back to uid {meta['uid']} gid {meta['gid']}; "
                    "chown it before starting the gateway")
    return None


def pg_command(url: str) -> tuple[str, dict[str, str]]:
    """DATABASE_URL without its password, and an environment carrying the password (PGPASSWORD)."""
    parts = urlsplit(url)
    env = {**os.environ}
    if parts.password is not None:
        env["PGPASSWORD"] = unquote(parts.password)
        host = parts.hostname or ""
        netloc = f"{parts.username or ''}@{host}" + (f":{parts.port}" if parts.port else "")
        url = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return url, env


def _run_pg(tool: str, args: list[str], url: str) -> None:
    if shutil.which(tool) is None:
        raise BackupError(f"{tool} is not installed; install the PostgreSQL client (apt-get install postgresql-client)")
    bare, env = pg_command(url)
    result = subprocess.run([tool, *args, f"--dbname={bare}"], capture_output=True, text=True, env=env, timeout=3600)
    if result.returncode != 0:
        raise BackupError(f"{tool} exited {result.returncode}: {result.stderr.strip()[-2000:]}")


def backup(settings: Settings, out: Path, keep: int, env_file: Path | None, now: dt.datetime | None = None) -> Path:
    """Write one dated backup under `out` and prune old ones; returns the backup folder."""
    ledger = settings.data_dir / SQLITE_FILE
    database_url = settings.database_url.get_secret_value() if settings.database_url else None
    if not ledger.exists() and database_url is None:
        raise BackupError(f"nothing to back up: no ledger at {ledger} and no DATABASE_URL; check DATA_DIR")
    stamp = (now or dt.datetime.now(dt.timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = out / stamp
    partial = Path(tempfile.mkdtemp(prefix=f".{stamp}-", dir=out))
    old_umask = os.umask(0o077)
    files: dict[str, dict[str, str]] = {}
    try:
        if ledger.exists():
            sqlite_copy(ledger, partial / SQLITE_FILE)
            files[SQLITE_FILE] = {"source": str(ledger.resolve()), **file_meta(ledger)}
        if database_url is not None:
            _run_pg("pg_dump", ["--format=custom", "--no-owner", f"--file={partial / 'postgres.dump'}"], database_url)
            files["postgres.dump"] = {"source": "DATABASE_URL"}
        for name, source in (("config.yaml", settings.config_path), ("env", env_file)):
            if source is not None and Path(source).is_file():
                shutil.copyfile(source, partial / name)
                files[name] = {"source": str(Path(source).resolve()), **file_meta(Path(source))}
        for name in files:
            files[name]["sha256"] = sha256(partial / name)
        (partial / MANIFEST).write_text(json.dumps({"created": stamp, "files": files}, indent=2) + "\n")
        partial.rename(target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    finally:
        os.umask(old_umask)
    prune(out, keep)
    return target


def backups_in(out: Path) -> list[Path]:
    return sorted(p for p in out.iterdir() if p.is_dir() and (p / MANIFEST).is_file() and not p.name.startswith("."))


def prune(out: Path, keep: int) -> list[Path]:
    """Remove all but the newest `keep` backups (stamps sort by time)."""
    old = backups_in(out)[:-keep] if keep > 0 else []
    for path in old:
        shutil.rmtree(path)
    return old


def restore(folder: Path, settings: Settings) -> list[str]:
    """Verify every file, then put each back; returns what was restored."""
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise BackupError(f"{folder} has no {MANIFEST}: give a folder written by `gateway backup`")
    files = json.loads(manifest_path.read_text())["files"]
    for name, meta in files.items():
        if not (folder / name).is_file() or sha256(folder / name) != meta["sha256"]:
            raise BackupError(f"{folder / name} is missing or does not match its sha256 in {MANIFEST}; "
                              "nothing was restored")
    restored = []
    if SQLITE_FILE in files:
        dest = settings.data_dir / SQLITE_FILE
        dest.parent.mkdir(parents=True, exist_ok=True)
        sqlite_copy(folder / SQLITE_FILE, dest)
        restored.append(f"ledger -> {dest}")
        restored.append(put_back_meta(dest, files[SQLITE_FILE]))
    if "postgres.dump" in files:
        if settings.database_url is None:
            raise BackupError("the backup has a PostgreSQL dump but DATABASE_URL is not set; "
                              "set it to the database to restore into")
        _run_pg("pg_restore", ["--clean", "--if-exists", "--no-owner", str(folder / "postgres.dump")],
                settings.database_url.get_secret_value())
        restored.append("postgres.dump -> DATABASE_URL")
    for name in ("config.yaml", "env"):
        if name in files:
            dest = Path(files[name]["source"])
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(folder / name, dest)
            restored.append(f"{name} -> {dest}")
            restored.append(put_back_meta(dest, files[name]))
    return [line for line in restored if line]
