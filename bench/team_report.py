"""`python -m bench team`: its command line, the table, the targets of issue 12, the plot and the
section of bench/RESULTS.md.

How it fails: a missing configuration or user count leaves its cells "-" and its target
"not measured"; writing RESULTS.md replaces only the team section (between its markers) and
keeps the rest of the file.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Annotated

import typer

from bench import team

BEGIN, END = "<!-- team-benchmark:begin -->", "<!-- team-benchmark:end -->"
HEAD = ("configuration", "users", "requests", "errors", "TTFT p50 s", "TTFT p95 s", "total p95 s", "local req %",
        "local tokens %", "cloud USD / 1k req")


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    order = list(dict.fromkeys(r["configuration"] for r in rows))
    for r in sorted(rows, key=lambda r: (r["users"], order.index(r["configuration"]))):
        lines.append("| " + " | ".join((r["configuration"], str(r["users"]), str(r["requests"]), str(r["errors"]),
                                         _num(r["ttft_p50"]), _num(r["ttft_p95"]), _num(r["total_p95"]),
                                         _num(100 * r["local_share"], 0), _num(100 * r["local_token_share"], 0),
                                         _num(r["cloud_cost_per_1k"], 4))) + " |")
    return "\n".join(lines)


def _row(rows: list[dict], name: str, users: int) -> dict | None:
    return next((r for r in rows if r["configuration"] == name and r["users"] == users), None)


def targets(rows: list[dict]) -> list[tuple[str, str, bool | None]]:
    """(target, measured, met) for issue 12's three targets."""
    out: list[tuple[str, str, bool | None]] = []
    ours8, first8 = _row(rows, "gateway", 8), _row(rows, "local-first", 8)
    if ours8 and first8 and ours8["ttft_p95"] and first8["ttft_p95"]:
        ratio = ours8["ttft_p95"] / first8["ttft_p95"]
        met = ratio <= 0.2 and ours8["local_share"] >= 0.5
        out.append(("8 users: TTFT p95 <= 1/5 of local-first's, >= 50% local",
                    f"{ratio:.2f} of local-first's, {100 * ours8['local_share']:.0f}% local", met))
    else:
        out.append(("8 users: TTFT p95 <= 1/5 of local-first's, >= 50% local", "not measured", None))
    ours1, first1 = _row(rows, "gateway", 1), _row(rows, "local-first", 1)
    if ours1 and first1 and ours1["ttft_p50"] and first1["ttft_p50"]:
        same = abs(ours1["ttft_p50"] - first1["ttft_p50"]) <= 0.2 * first1["ttft_p50"] + 0.5
        out.append(("1 user: simple requests stay local, latency as local-first's",
                    f"local {100 * ours1['local_share']:.0f}% vs {100 * first1['local_share']:.0f}%, TTFT p50 "
                    f"{ours1['ttft_p50']:.1f} s vs {first1['ttft_p50']:.1f} s",
                    same and ours1["local_share"] >= first1["local_share"]))
    else:
        out.append(("1 user: simple requests stay local, latency as local-first's", "not measured", None))
    if ours8:
        ratio = ours8["cloud_cost_per_1k"] / ours8["cloud_only_cost_per_1k"] if ours8["cloud_only_cost_per_1k"] else 0.0
        out.append(("8 users: cloud cost per 1k requests <= 1/2 of cloud-only's",
                    f"{ours8['cloud_cost_per_1k']:.4f} USD vs {ours8['cloud_only_cost_per_1k']:.4f} USD ({ratio:.2f})",
                    ratio <= 0.5))
    return out


def targets_table(rows: list[dict]) -> str:
    lines = ["| target | measured | met |", "|---|---|---|"]
    for name, measured, met in targets(rows):
        lines.append(f"| {name} | {measured} | {'-' if met is None else 'yes' if met else 'no'} |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for name in dict.fromkeys(r["configuration"] for r in rows):
        mine = sorted((r for r in rows if r["configuration"] == name), key=lambda r: r["users"])
        if mine:
            left.plot([r["users"] for r in mine], [r["ttft_p95"] or 0 for r in mine], marker="o", label=name)
            right.plot([r["users"] for r in mine], [100 * r["local_share"] for r in mine], marker="o", label=name)
    left.set(xlabel="users", ylabel="TTFT p95 (s)", title="Time to first token, p95", yscale="log")
    right.set(xlabel="users", ylabel="% of requests", title="Served locally", ylim=(0, 105))
    left.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def section(results: dict, command: str, plot_name: str | None) -> str:
    o = results["options"]
    parts = [BEGIN, "## Team load (issue 12): local-first, vanilla LiteLLM and this gateway", "",
             f"Command: `{command}`. {o['slots']} runner slots, {o['tokens_per_second']:g} tokens/s per stream, time "
             f"compressed {o['speedup']:g}x (all numbers in real seconds), spill threshold {o['max_wait']:g} s, seed "
             f"{o['seed']}. See bench/team.py for the workload and its sources.", "",
             table(results["rows"]), "", targets_table(results["rows"]), ""]
    if plot_name:
        parts += [f"![team load]({plot_name})", ""]
    return "\n".join(parts + [END])


def write_section(results_md: Path, text: str) -> None:
    old = results_md.read_text() if results_md.exists() else ""
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    results_md.write_text(pattern.sub(lambda _: text, old) if pattern.search(old) else old.rstrip("\n") + "\n\n" + text + "\n")


def command(
    users: Annotated[list[int] | None, typer.Option(help="Team sizes (repeatable); default 1, 4, 8, 16.")] = None,
    min_requests: Annotated[int, typer.Option(min=2, help="Requests per team size (at least 10 per user).")] = 20,
    speedup: Annotated[float, typer.Option(min=1, help="Time compression (rates x speedup).")] = 5.0,
    max_wait: Annotated[float, typer.Option(min=0, help="The gateway's local_max_wait_seconds, real seconds.")] = 5.0,
    other_wait: Annotated[list[float] | None, typer.Option(help="Also run the gateway with this threshold (repeatable).")] = None,
    only: Annotated[list[str] | None, typer.Option(help="Only these configurations (repeatable).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the arrivals (the same for every configuration).")] = 1,
    results_md: Annotated[Path | None, typer.Option("--results-md", help="Write the team section (and team.png) into this RESULTS.md.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json-out", help="Write the results as JSON here.")] = None,
) -> None:
    """Team-load benchmark: spill-over against local-first and vanilla LiteLLM (issue 12)."""
    configurations = tuple(c for c in team.CONFIGURATIONS if not only or c in only)
    results = team.run(tuple(users or team.USERS), min_requests, speedup, max_wait, configurations, seed,
                       progress=lambda msg: typer.echo(msg, err=True), other_waits=tuple(other_wait or ()))
    typer.echo(table(results["rows"]) + "\n\n" + targets_table(results["rows"]))
    if json_out:
        json_out.write_text(json.dumps(results, indent=2))
    if results_md:
        png = results_md.with_name("team.png")
        plot(results["rows"], png)
        write_section(results_md, section(results, "python -m bench team " + " ".join(sys.argv[2:]), png.name))


def main(args: list[str]) -> None:
    app = typer.Typer(add_completion=False)
    app.command()(command)
    app(args=args, prog_name="python -m bench team")
