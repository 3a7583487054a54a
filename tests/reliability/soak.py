"""The soak test (issue 6): sustained mixed load with random faults in both tiers and Redis,
bounded in time and count, loopback only. Every request must be accounted for.

    .venv/bin/python -m tests.reliability.soak --duration 1800 --concurrency 16   # the long form, by hand
    .venv/bin/python -m pytest tests/reliability/test_soak.py                       # the short form (CI)

A real `gateway serve` (client keys, limits in Redis, ledger in a fresh DATA_DIR, 3 s backend
timeouts) takes `concurrency` clients sending a random mix (tests.reliability.soak_client:
local/cloud/auto models, streaming or not, short or long prompts, three keys, one of them
limited) while `FaultInjector` (tests.reliability.soak_env) flips the emulators' faults.
Afterwards, with everything healed, it checks that the ledger holds exactly one record per
request the clients sent, with the status they saw, that no key reached the gateway's log,
and reports the gateway's RSS growth (its whole process tree, sampled every 5 s). It prints
one summary line and writes the figures as JSON; `problems()` lists what fails a soak (the
CLI exits 1 on any), and test_soak.py asserts the same figures one by one.
"""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import tempfile
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

import httpx
import typer

from hooks.ledger_store import SQLITE_FILE, TABLE
from tests.harness import DEEPSEEK_KEY
from tests.reliability import soak_client
from tests.reliability.soak_env import KEY_WEIGHTS, FaultInjector, Stack, process_tree, rss

MB = 1024 * 1024
WARMUP_REQUESTS = 20  # healthy, before faults start and before the first RSS sample
RSS_EVERY = 5.0


@dataclass(frozen=True)
class Options:
    duration: float = 60.0  # seconds of load (warm-up and checks come on top)
    concurrency: int = 16
    max_requests: int = 4000
    seed: int = 6
    workers: int = 2
    fault_min: float = 1.0  # seconds a tier's fault lasts: uniform in [fault_min, fault_max]
    fault_max: float = 4.0
    redis_every: float = 20.0  # mean seconds between Redis outages (0: none)
    request_bound: float = 30.0  # per-request must-not-hang bound, client side
    backend_timeout: float = 3.0


def run(options: Options, progress: Callable[[str], None] = print) -> dict:
    with tempfile.TemporaryDirectory(prefix="gateway-soak-") as tmp, Stack(Path(tmp), options.workers,
                                                                              options.backend_timeout) as stack:
        progress(f"soak: gateway on {stack.gateway.url}, {options.workers} workers, DATA_DIR {stack.data_dir}")
        figures = asyncio.run(_load(stack, options, progress))
        progress("soak: load done, faults healed; waiting for the ledger")
        figures["ledger"] = _ledger_check(stack.data_dir, figures.pop("outcomes"))
        log = stack.gateway.log()
        secrets = (*stack.keys.values(), DEEPSEEK_KEY)
        figures["gateway_log"] = {"secrets": sum(log.count(secret) for secret in secrets),
                                  "error_lines": log.count('"level": "ERROR"'), "tracebacks": log.count("Traceback"),
                                  "fatal_errors": log.count("Fatal Python error")}
    figures["options"] = asdict(options)
    return figures


async def _load(stack: Stack, options: Options, progress: Callable[[str], None]) -> dict:
    rng = random.Random(options.seed)
    tally = soak_client.Tally()
    url, pid = stack.gateway.url, stack.gateway.proc.pid
    limits = httpx.Limits(max_connections=options.concurrency, max_keepalive_connections=options.concurrency)
    async with httpx.AsyncClient(timeout=options.request_bound, limits=limits) as client:
        async def one(spec: soak_client.Spec) -> None:
            tally.add(await soak_client.send(client, url, stack.keys[spec.key], spec, options.request_bound))

        for _ in range(WARMUP_REQUESTS):
            await one(soak_client.pick(rng, KEY_WEIGHTS))
        first = process_tree(pid)
        seen, memory = set(first), [(0.0, rss(first))]

        def sample(t: float) -> None:
            pids = process_tree(pid)
            seen.update(pids)
            memory.append((round(t, 1), rss(pids)))

        injector = FaultInjector(stack, random.Random(options.seed + 1), (options.fault_min, options.fault_max),
                                 options.redis_every, options.backend_timeout)
        stop = asyncio.Event()
        started = time.monotonic()
        budget = iter(range(options.max_requests - WARMUP_REQUESTS))

        async def client_loop() -> None:
            while time.monotonic() - started < options.duration and next(budget, None) is not None:
                await one(soak_client.pick(rng, KEY_WEIGHTS))

        async def sample_rss() -> None:
            while not stop.is_set():
                await asyncio.sleep(RSS_EVERY)
                sample(time.monotonic() - started)
                progress(f"soak: {time.monotonic() - started:5.0f} s  {len(tally.outcomes)} requests  "
                         f"lost {tally.count('lost')}  hung {tally.count('hung')}  RSS {memory[-1][1] / MB:.0f} MB")

        background = [asyncio.create_task(injector.run(stop)), asyncio.create_task(sample_rss())]
        await asyncio.gather(*(client_loop() for _ in range(options.concurrency)))
        elapsed = time.monotonic() - started
        sample(elapsed)
        stop.set()
        await asyncio.gather(*background)
    await asyncio.to_thread(injector.heal)
    figures = tally.figures()
    figures.update(
        load_seconds=round(elapsed, 1),
        requests_per_second=round((figures["sent"] - WARMUP_REQUESTS) / elapsed, 1),
        faults_injected=dict(sorted(injector.injected.items())),
        rss_mb={"start": round(memory[0][1] / MB, 1), "end": round(memory[-1][1] / MB, 1),
                "growth": round((memory[-1][1] - memory[0][1]) / MB, 1), "peak": round(max(v for _, v in memory) / MB, 1),
                "growth_second_half": round((memory[-1][1] - next(v for t, v in memory if t >= elapsed / 2)) / MB, 1),
                "samples": [(t, round(v / MB, 1)) for t, v in memory]},
        gateway_processes={"at_start": len(first), "started_during_run": len(seen - set(first))},
        outcomes=tally.outcomes,
    )
    return figures


def _ledger_rows(data_dir: Path) -> dict[str, tuple[int, str | None]]:
    path = data_dir / SQLITE_FILE
    if not path.is_file():
        return {}
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as conn:
        return {rid: (status, error) for rid, status, error in conn.execute(f"SELECT request_id, status, error_type FROM {TABLE}")}


def _disagrees(outcome: soak_client.Outcome, row: tuple[int, str | None]) -> bool:
    """Another status, or served by one and failed by the other (a 200 stream that broke is an error)."""
    status, error_type = row
    if status != outcome.status:
        return True
    ledger_failed = status >= 400 or error_type is not None
    return outcome.kind in ("served", "error") and ledger_failed != (outcome.kind == "error")


def _ledger_check(data_dir: Path, outcomes: list[soak_client.Outcome], timeout: float = 60.0) -> dict:
    """Wait for the ledger to hold every request (records are written after the response), then compare."""
    ids = {o.request_id for o in outcomes if o.request_id}
    deadline = time.monotonic() + timeout
    rows = _ledger_rows(data_dir)
    while (len(rows) < len(outcomes) or not ids <= rows.keys()) and time.monotonic() < deadline:
        time.sleep(0.5)
        rows = _ledger_rows(data_dir)
    mismatched = [f"{o.request_id}: client {o.status} {o.kind}, ledger {rows[o.request_id]} ({o.detail}, {o.spec})"
                  for o in outcomes if o.request_id in rows and _disagrees(o, rows[o.request_id])]
    return {"records": len(rows), "client_requests": len(outcomes), "client_ids_missing": len(ids - rows.keys()),
            "records_without_client_id": len(rows.keys() - ids), "status_mismatches": len(mismatched),
            "status_mismatch_examples": mismatched[:10]}


def summary_line(f: dict) -> str:
    errors = ", ".join(f"{kind} ×{n}" for kind, n in f["errors_by_kind"].items()) or "none"
    routes = ", ".join(f"{route} {n}" for route, n in sorted(f["served_by_route"].items()))
    return (f"soak: {f['sent']} sent in {f['load_seconds']:.0f} s at c{f['options']['concurrency']}: "
            f"{f['served']} served ({routes}; {f['served_by_other_tier']} by the other tier), {f['errors']} errors "
            f"({errors}), lost {f['lost']}, hung {f['hung']}; ledger {f['ledger']['records']}/{f['sent']} records, "
            f"{f['ledger']['status_mismatches']} status mismatches; gateway RSS {f['rss_mb']['start']} -> "
            f"{f['rss_mb']['end']} MB ({f['rss_mb']['growth']:+} MB; {f['rss_mb']['growth_second_half']:+} MB in the second half)")


def soak(
    duration: Annotated[float, typer.Option(min=1, help="Seconds of load (warm-up and the ledger check come on top).")] = 60.0,
    concurrency: Annotated[int, typer.Option(min=1, help="Clients sending at once.")] = 16,
    max_requests: Annotated[int, typer.Option(min=WARMUP_REQUESTS + 1, help="Stop after this many requests even if time is left.")] = 1_000_000,
    seed: Annotated[int, typer.Option(help="Seed of the request mix and of the fault schedule.")] = 6,
    workers: Annotated[int, typer.Option(min=1, help="Gateway worker processes.")] = 2,
    redis_every: Annotated[float, typer.Option(min=0, help="Mean seconds between Redis outages; 0 turns them off.")] = 20.0,
    json_out: Annotated[Path, typer.Option("--json-out", help="Write the figures here as JSON.")] = Path("soak.json"),
) -> None:
    """Soak the gateway with mixed load and random faults; exit 1 if a request was lost or hung or the ledger disagrees."""
    options = Options(duration=duration, concurrency=concurrency, max_requests=max_requests, seed=seed, workers=workers,
                      redis_every=redis_every)
    figures = run(options, progress=lambda message: typer.echo(message, err=True))
    json_out.write_text(json.dumps(figures, indent=2))
    typer.echo(summary_line(figures))
    typer.echo(f"figures written to {json_out}", err=True)
    if problems(figures):
        typer.secho("soak failed: " + "; ".join(problems(figures)), err=True, fg="red")
        raise typer.Exit(code=1)


def problems(f: dict) -> list[str]:
    """What makes a soak fail; test_soak.py asserts the same figures one by one."""
    found = [f"{f[kind]} {kind}" for kind in ("lost", "hung") if f[kind]]
    ledger = f["ledger"]
    if ledger["records"] != f["sent"] or ledger["client_ids_missing"]:
        found.append(f"ledger has {ledger['records']} records for {f['sent']} requests "
                     f"({ledger['client_ids_missing']} request ids missing)")
    if ledger["status_mismatches"]:
        found.append(f"{ledger['status_mismatches']} ledger records disagree with the client (status, or served vs failed)")
    if f["gateway_processes"]["started_during_run"] or f["gateway_log"]["fatal_errors"]:
        found.append(f"a gateway worker died and was replaced ({f['gateway_log']['fatal_errors']} fatal errors logged)")
    if f["gateway_log"]["secrets"]:
        found.append(f"a key appears {f['gateway_log']['secrets']} times in the gateway log")
    return found


if __name__ == "__main__":
    typer.run(soak)
