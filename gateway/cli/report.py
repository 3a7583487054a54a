"""`gateway report`: the command; what it computes is gateway.report."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from gateway.cli.common import ConfigOpt, fail, settings_or_exit
from gateway.report import Format, budget_rows, parse_since, render_csv, render_table, summarize
from hooks.cost_rules import cloud_spend_by_key, month_start_ts


def report(
    since: Annotated[str, typer.Option(help="Period to cover, up to now: 30m, 24h, 7d, 2w.")] = "24h",
    fmt: Annotated[Format, typer.Option("--format", help="table (readable), csv or json.")] = Format.TABLE,
    plot: Annotated[Path | None,
                    typer.Option(help="Also draw savings and local/cloud share over time to this PNG.")] = None,
    config: ConfigOpt = None,
) -> None:
    """Requests, tokens, cloud spend and savings from the request ledger."""
    from hooks.ledger_store import open_store

    seconds = parse_since(since)
    settings = settings_or_exit(config_path=config)
    until = time.time()
    bucket = 3600 if seconds <= 2 * 86400 else 86400
    store = open_store(settings)
    month_start = month_start_ts(until)
    try:
        conn = store.open_for_reading()
        try:
            summary = summarize(store.rows_since(conn, until - seconds), until - seconds, until, bucket if plot else 0)
            spend = cloud_spend_by_key(store.rows_since(conn, month_start))
        finally:
            conn.close()
    except Exception as exc:
        raise fail(f"cannot read the ledger at {store.location}: {exc}") from None
    data = summary.as_dict()
    data["budgets"] = budget_rows(settings, spend, until)
    render = {Format.JSON: lambda d: json.dumps(d, indent=2), Format.CSV: render_csv, Format.TABLE: render_table}[fmt]
    typer.echo(render(data))
    if plot is not None:
        from gateway.report_plot import draw

        try:
            draw(summary, plot)
        except ImportError:
            raise fail("--plot needs matplotlib: .venv/bin/pip install matplotlib==3.11.2") from None
        except OSError as exc:
            raise fail(f"cannot write the plot to {plot}: {exc}") from None
        typer.secho(f"plot written to {plot}", err=True)
