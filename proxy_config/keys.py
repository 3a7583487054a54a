"""Static client keys (no database): where they come from, their limits, and `gateway keys`.

Keys come from `API_KEYS` (comma-separated, default limits), the `gateway_keys:` list in
config.yaml and the YAML file named by `KEYS_FILE`; an entry for a key that is already
known overrides its name and limits (the keys file wins over config.yaml, both over
API_KEYS). An entry is

    - name: alice-laptop              # shown in logs and in the admin UI after `keys sync`
      key: sk-...                     # or os.environ/ALICE_KEY, or instead: sha256: <hex digest>
      rate_limit_requests: 500        # optional overrides of RATE_LIMIT_REQUESTS / _WINDOW / _TPM
      rate_limit_window: 60
      rate_limit_tpm: 200000
      cloud_budget_usd: 5.00          # optional monthly cloud budget (default KEY_CLOUD_BUDGET_USD)
      local_only: true                # optional: never send this key's requests to the cloud

Keys are only ever compared and logged by their sha256 (`key_id` gives the short form for
logs). Invalid files raise `SettingsError` naming the file, entry and field.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer
import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from proxy_config.settings import Settings, SettingsError, read_config

ENV_REF = "os.environ/"


def key_hash(key: str) -> str:
    """sha256 hex digest; equal to LiteLLM's virtual-key token hash for the same key."""
    return hashlib.sha256(key.encode()).hexdigest()


def key_id(digest: str) -> str:
    """The short form logs show: sha256:1a2b3c4d."""
    return f"sha256:{digest[:8]}"


class KeyEntry(BaseModel, extra="forbid"):
    name: str | None = Field(None, max_length=64, description="Label for logs and the admin UI.")
    key: str | None = Field(None, description="The key, or os.environ/NAME to read it from the environment.")
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$", description="The key's sha256 instead of the key.")
    rate_limit_requests: int | None = Field(None, ge=1)
    rate_limit_window: int | None = Field(None, ge=1)
    rate_limit_tpm: int | None = Field(None, ge=1)
    cloud_budget_usd: float | None = Field(None, ge=0, description="Monthly cloud spend limit in USD (docs/costs.md).")
    local_only: bool | None = Field(None, description="Never send this key's requests to the cloud (the privacy switch).")

    @model_validator(mode="after")
    def _one_key(self) -> KeyEntry:
        if (self.key is None) == (self.sha256 is None):
            raise ValueError("set exactly one of key or sha256")
        return self


class KeysFile(BaseModel, extra="forbid"):
    keys: list[KeyEntry] = Field(default_factory=list)


@dataclass(frozen=True)
class ClientKey:
    digest: str
    name: str
    requests: int
    window: int
    tpm: int | None
    secret: str | None = field(default=None, repr=False)  # only `keys sync` needs it
    source: str = "API_KEYS"
    budget: float | None = None  # monthly cloud budget in USD; None = unlimited
    local_only: bool = False  # the cloud may not serve this key's requests

    @property
    def id(self) -> str:
        return key_id(self.digest)


@dataclass(frozen=True)
class KeyTable:
    keys: dict[str, ClientKey]  # by sha256
    master_digest: str | None

    def is_master(self, presented: str) -> bool:
        return self.master_digest is not None and hmac.compare_digest(key_hash(presented), self.master_digest)

    def lookup(self, presented: str) -> ClientKey | None:
        return self.keys.get(key_hash(presented))


def _resolve(value: str, where: str, environ: dict[str, str]) -> str:
    if not value.startswith(ENV_REF):
        return value
    name = value[len(ENV_REF):]
    if not environ.get(name):
        raise SettingsError(f"{where}: key reads {value} but {name} is not set in the environment")
    return environ[name]


def _entries(raw: object, where: str) -> list[KeyEntry]:
    try:
        return KeysFile.model_validate(raw if isinstance(raw, dict) else {"keys": raw}).keys
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise SettingsError(f"{where} is invalid: {problems}") from None


def read_keys_file(path: Path) -> list[KeyEntry]:
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise SettingsError(f"KEYS_FILE {path} does not exist; create it or unset KEYS_FILE") from None
    except yaml.YAMLError as exc:
        raise SettingsError(f"KEYS_FILE {path} is not valid YAML: {exc}") from None
    return _entries(raw, f"KEYS_FILE {path}")


def load_keys(settings: Settings, environ: dict[str, str] | None = None) -> KeyTable:
    """All client keys with their effective limits; raises SettingsError on a bad entry."""
    environ = dict(os.environ if environ is None else environ)
    keys: dict[str, ClientKey] = {}
    defaults = dict(requests=settings.rate_limit_requests, window=settings.rate_limit_window, tpm=settings.rate_limit_tpm,
                    budget=settings.key_cloud_budget_usd)
    for secret in settings.api_keys:
        value = secret.get_secret_value()
        digest = key_hash(value)
        keys[digest] = ClientKey(digest, f"key-{digest[:8]}", secret=value, **defaults)
    sources = [("config.yaml gateway_keys", _entries(read_config(settings.config_path).get("gateway_keys") or [],
                                                    f"{settings.config_path} gateway_keys"))]
    if settings.keys_file is not None:
        sources.append((f"KEYS_FILE {settings.keys_file}", read_keys_file(settings.keys_file)))
    for source, entries in sources:
        for index, entry in enumerate(entries):
            value = None if entry.key is None else _resolve(entry.key, f"{source} entry {index}", environ)
            digest = entry.sha256 or key_hash(value)
            known = keys.get(digest)
            base = dict(requests=known.requests, window=known.window, tpm=known.tpm, budget=known.budget) if known else defaults
            keys[digest] = ClientKey(
                digest=digest,
                name=entry.name or (known.name if known else f"key-{digest[:8]}"),
                requests=entry.rate_limit_requests or base["requests"],
                window=entry.rate_limit_window or base["window"],
                tpm=entry.rate_limit_tpm or base["tpm"],
                secret=value or (known.secret if known else None),
                source=source,
                budget=entry.cloud_budget_usd if entry.cloud_budget_usd is not None else base["budget"],
                local_only=entry.local_only if entry.local_only is not None else bool(known and known.local_only),
            )
    master = settings.master_key.get_secret_value() if settings.master_key else None
    return KeyTable(keys, key_hash(master) if master else None)


# ------------------------------------------------------------------ CLI: gateway keys ...

keys_app = typer.Typer(help="Client API keys: list them, make a new one, register them as LiteLLM virtual keys.",
                       no_args_is_help=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c",
                                                help="LiteLLM config file (default: GATEWAY_CONFIG or ./config.yaml).")]


def _table_or_exit(config: Path | None) -> tuple[Settings, KeyTable]:
    from proxy_config.cli import fail, settings_or_exit

    settings = settings_or_exit(config_path=config)
    try:
        return settings, load_keys(settings)
    except SettingsError as exc:
        raise fail(str(exc)) from None


@keys_app.command("list")
def list_keys(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Show the client keys (by sha256 prefix, never the key) and their limits."""
    _, table = _table_or_exit(config)
    rows = [{"name": k.name, "id": k.id, "requests": k.requests, "window": k.window, "tpm": k.tpm, "source": k.source}
            for k in table.keys.values()]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        tpm = f", {row['tpm']} tokens/min" if row["tpm"] else ""
        typer.echo(f"{row['name']:<24} {row['id']}  {row['requests']} req / {row['window']} s{tpm}  ({row['source']})")
    if not rows:
        typer.echo("no client keys: set API_KEYS or KEYS_FILE (the master key still works)")


@keys_app.command("new")
def new_key(name: Annotated[str, typer.Option(help="Label for the keys file entry.")] = "new-key") -> None:
    """Print a fresh random key and a keys-file entry that stores only its sha256."""
    if not re.fullmatch(r"[\w.@-]{1,64}", name):
        raise typer.BadParameter("use letters, digits and . _ @ - only", param_hint="--name")
    key = "sk-" + secrets.token_hex(24)
    typer.echo(f"key (give it to the client; it is not stored anywhere): {key}")
    typer.echo(f"keys file entry:\n  - name: {name}\n    sha256: {key_hash(key)}")


@keys_app.command("sync")
def sync(
    config: ConfigOpt = None,
    url: Annotated[str | None, typer.Option(help="Gateway base URL (default: http://127.0.0.1:PORT).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would change, change nothing.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Register the static keys as LiteLLM virtual keys (DB mode), with their limits."""
    from proxy_config.cli import fail
    from proxy_config.dbmode import sync_keys

    settings, table = _table_or_exit(config)
    if settings.master_key is None:
        raise fail("LITELLM_MASTER_KEY is not set; the key API needs the master key")
    base = url or f"http://127.0.0.1:{settings.port}"
    results = sync_keys(list(table.keys.values()), base, settings.master_key.get_secret_value(), dry_run=dry_run)
    if as_json:
        typer.echo(json.dumps([r.__dict__ for r in results], indent=2))
    else:
        for r in results:
            typer.echo(f"{r.action:<9} {r.name:<24} {r.id}  {r.detail}")
    if any(r.action == "failed" for r in results):
        raise typer.Exit(code=1)


@keys_app.command("budget")
def budget(
    name: Annotated[str | None, typer.Argument(help="Key name or sha256: id; without it, show every key's budget.")] = None,
    set_usd: Annotated[float | None, typer.Option("--set", min=0, help="New monthly cloud budget in USD (written to KEYS_FILE).")] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show monthly cloud budgets and this month's spend (from the ledger), or set one key's budget."""
    from proxy_config.cli import fail

    settings, table = _table_or_exit(config)
    if set_usd is not None:
        if name is None:
            raise fail("name the key whose budget to set: gateway keys budget NAME --set 5.00")
        key = next((k for k in table.keys.values() if name in (k.name, k.id)), None)
        if key is None:
            raise fail(f"no client key is named {name!r}; `gateway keys list` shows them")
        if settings.keys_file is None:
            raise fail("budgets are set in the keys file: set KEYS_FILE (see docs/keys.md), then run this again")
        set_budget(settings.keys_file, key, set_usd)
        typer.echo(f"{key.name} ({key.id}): cloud budget {set_usd:.2f} USD a month, written to {settings.keys_file}; "
                   "restart the gateway to apply it")
        return
    rows = budget_status(settings, table, name)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        limit = "no budget" if row["budget_usd"] is None else f"{row['spent_usd']:.2f} of {row['budget_usd']:.2f} USD"
        typer.echo(f"{row['name']:<24} {row['id']}  {limit} in {row['month']}  (resets {row['resets']})")
    if not rows:
        typer.echo("no client keys" if name is None else f"no client key is named {name!r}")


def set_budget(path: Path, key: ClientKey, usd: float) -> None:
    """Set `cloud_budget_usd` on the key's entry in the keys file, adding an entry (by sha256) when it has none."""
    raw = yaml.safe_load(path.read_text()) if path.is_file() else None
    raw = raw if isinstance(raw, dict) else {"keys": raw or []}
    entries = raw.setdefault("keys", [])
    for entry in entries:
        if entry.get("sha256") == key.digest or (entry.get("key") and entry.get("name") == key.name):
            entry["cloud_budget_usd"] = usd
            break
    else:
        entries.append({"name": key.name, "sha256": key.digest, "cloud_budget_usd": usd})
    _entries(raw, f"KEYS_FILE {path}")  # never write a file the gateway would refuse
    path.write_text(yaml.safe_dump(raw, sort_keys=False))


def budget_status(settings: Settings, table: KeyTable, name: str | None = None) -> list[dict]:
    import time

    from hooks.cost_rules import cloud_spend_by_key, month_of, month_start_ts, reset_text
    from hooks.ledger_store import open_store

    now = time.time()
    store = open_store(settings)
    try:
        conn = store.open_for_reading()
        try:
            spend = cloud_spend_by_key(store.rows_since(conn, month_start_ts(now)))
        finally:
            conn.close()
    except FileNotFoundError:
        spend = {}
    rows = []
    for key in table.keys.values():
        if name is None or name in (key.name, key.id):
            spent = spend.get(key.id, 0.0)
            rows.append({"name": key.name, "id": key.id, "month": month_of(now), "spent_usd": spent,
                         "budget_usd": key.budget, "resets": reset_text(now),
                         "remaining_usd": None if key.budget is None else max(key.budget - spent, 0.0)})
    return rows
