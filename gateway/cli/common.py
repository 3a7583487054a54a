"""What every `gateway` command shares: the --config and --json options and the error exit.

How it fails: `fail` prints `error: ...` in red on stderr and returns the `typer.Exit(code=1)` to
raise; `settings_or_exit` turns a `SettingsError` (a bad config.yaml or environment) into that.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from proxy_config.settings import Settings, SettingsError, load_settings

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c",
                                                help="LiteLLM config file (default: GATEWAY_CONFIG or ./config.yaml).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=1)


def settings_or_exit(**overrides: Any) -> Settings:
    try:
        return load_settings(**overrides)
    except SettingsError as exc:
        raise fail(str(exc)) from None
