"""`gateway keys ...`: list, new, sync (DB mode) and budget; the keys themselves are proxy_config.keys."""

from __future__ import annotations

import json
import re
import secrets
from pathlib import Path
from typing import Annotated

import typer

from gateway.cli.common import ConfigOpt, JsonOpt, fail, settings_or_exit
from gateway.report import budget_status
from proxy_config.keys import KeyTable, key_digest, load_keys, set_budget
from proxy_config.settings import Settings, SettingsError

app = typer.Typer(help="Client API keys: list them, make a new one, register them as LiteLLM virtual keys.",
                  no_args_is_help=True)


def _table_or_exit(config: Path | None) -> tuple[Settings, KeyTable]:
    settings = settings_or_exit(config_path=config)
    try:
        return settings, load_keys(settings)
    except SettingsError as exc:
        raise fail(str(exc)) from None


@app.command("list")
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


@app.command("new")
def new_key(name: Annotated[str, typer.Option(help="Label for the keys file entry.")] = "new-key") -> None:
    """Print a fresh random key and a keys-file entry that stores only its sha256."""
    if not re.fullmatch(r"[\w.@-]{1,64}", name):
        raise typer.BadParameter("use letters, digits and . _ @ - only", param_hint="--name")
    key = "sk-" + secrets.token_hex(24)
    typer.echo(f"key (give it to the client; it is not stored anywhere): {key}")
    typer.echo(f"keys file entry:\n  - name: {name}\n    sha256: {key_digest(key)}")


@app.command("sync")
def sync(
    config: ConfigOpt = None,
    url: Annotated[str | None, typer.Option(help="Gateway base URL (default: http://127.0.0.1:PORT).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would change, change nothing.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Register the static keys as LiteLLM virtual keys (DB mode), with their limits."""
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


@app.command("budget")
def budget(
    name: Annotated[str | None,
                    typer.Argument(help="Key name or sha256: id; without it, show every key's budget.")] = None,
    set_usd: Annotated[float | None, typer.Option(
        "--set", min=0, help="New monthly cloud budget in USD (written to KEYS_FILE).")] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show monthly cloud budgets and this month's spend (from the ledger), or set one key's budget."""
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
