"""`gateway bench` / `python -m bench`: run the benchmark, print the tables, write the JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from bench import report
from bench import routing as routing_bench


def bench(
    rounds: Annotated[int, typer.Option(min=1, help="Interleaved rounds; every number is the median over rounds.")] = 3,
    seconds: Annotated[float, typer.Option(min=1, help="Seconds per wrk run (each round: one at c1, one at c8).")] = 5.0,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes for every server (equal workers).")] = 1,
    stream_requests: Annotated[int, typer.Option(min=1, help="Streaming requests per round for TTFT.")] = 100,
    only: Annotated[list[str] | None, typer.Option(help="Run only these configurations (repeatable); direct is always kept.")] = None,
    routing_only: Annotated[bool, typer.Option("--routing-only", help="Only the routing-decision micro-benchmark.")] = False,
    json_out: Annotated[Path | None, typer.Option("--json-out", help="Write the full results as JSON here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON instead of the tables.")] = False,
) -> None:
    """Benchmark direct calls, vanilla LiteLLM (plain and tuned) and this gateway, interleaved, in one run."""
    if routing_only:
        rows = routing_bench.run()
        typer.echo(json.dumps(rows, indent=2) if as_json else routing_bench.table(rows))
        return
    from bench.run import ALL, Options, run

    chosen = tuple(name for name in ALL if name == "direct" or not only or name in only)
    unknown = set(only or ()) - set(ALL)
    if unknown:
        typer.secho(f"error: unknown configuration(s) {sorted(unknown)}; choose from {list(ALL)}", err=True, fg="red")
        raise typer.Exit(code=1)
    options = Options(rounds=rounds, seconds=seconds, workers=workers, stream_requests=stream_requests,
                      configurations=chosen)
    results = run(options, progress=lambda msg: typer.echo(msg, err=True))
    if json_out:
        json_out.write_text(json.dumps(results, indent=2))
    if as_json:
        typer.echo(json.dumps(results, indent=2))
        return
    typer.echo(render(results))


def render(results: dict) -> str:
    m = results["machine"]
    parts = [f"machine: {m['cpu']}, {m['cores']} cores, load at start {tuple(round(x, 2) for x in m['load_avg_at_start'])}",
             f"options: {results['options']}", "",
             report.table(results["summary"], results["overheads"], results["process"]), ""]
    if results["ratios"]:
        parts += [report.ratio_table(results["ratios"], results["targets"]), ""]
    parts.append(routing_bench.table(results["routing"]))
    return "\n".join(parts)


def main(args: list[str] | None = None, prog_name: str = "python -m bench") -> None:
    app = typer.Typer(add_completion=False)
    app.command()(bench)
    app(args=sys.argv[1:] if args is None else args, prog_name=prog_name)
