"""`gateway backup` and `gateway restore`; what they do is proxy_config.backup."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gateway.cli.common import ConfigOpt, fail, settings_or_exit
from proxy_config.backup import BackupError, backup, restore


def backup_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder that holds the dated backups.")],
    keep: Annotated[int, typer.Option(help="How many backups to keep in --out (older ones are removed).", min=1)] = 14,
    env_file: Annotated[Path | None, typer.Option(
        "--env-file", help="The env file to include (e.g. /etc/ai-gateway/env).")] = None,
    config: ConfigOpt = None,
) -> None:
    """Back up the ledger (SQLite backup API), PostgreSQL (pg_dump), config.yaml and the env file."""
    try:
        target = backup(settings_or_exit(config_path=config), out, keep, env_file)
    except BackupError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"backup written to {target.resolve()}")


def restore_cmd(
    folder: Annotated[Path, typer.Argument(help="A backup folder written by `gateway backup` (<out>/<stamp>).")],
    yes: Annotated[bool, typer.Option("--yes", help="Overwrite the ledger, database, config and env file.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Restore a backup (stop the gateway first); checks every sha256 before touching anything."""
    if not yes:
        raise fail("restore overwrites the ledger, the database, config.yaml and the env file; "
                   "stop the gateway, then run again with --yes")
    try:
        restored = restore(folder, settings_or_exit(config_path=config))
    except BackupError as exc:
        raise fail(str(exc)) from None
    for line in restored:
        if line.startswith("warning:"):
            typer.secho(line, fg=typer.colors.YELLOW, err=True)
        else:
            typer.echo(f"restored {line}")
