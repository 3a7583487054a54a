"""Turn raw per-round measurements into the summary, the ratios, the issue's targets, and a table.

Pure functions over plain dicts, so they are tested without servers. Every number a row
reports is the median over the interleaved rounds; overheads are a row minus `direct`
measured in the same rounds, and ratios compare rows from the same invocation only.
"""

from __future__ import annotations

import statistics

BASELINES = ("vanilla-plain", "vanilla-tuned")
OURS, HOOKS_OFF, DIRECT = "ours", "ours-hooks-off", "direct"


def summarize(rounds: dict[str, list[dict]]) -> dict[str, dict]:
    """rounds[target] is a list of {"c1": wrk, "c8": wrk, "stream": probe}; medians per target."""
    summary = {}
    for name, samples in rounds.items():
        med = lambda get: round(statistics.median(get(s) for s in samples), 3)  # noqa: E731
        summary[name] = {
            "p50_c1_ms": med(lambda s: s["c1"]["p50_us"] / 1e3),
            "p99_c1_ms": med(lambda s: s["c1"]["p99_us"] / 1e3),
            "p50_c8_ms": med(lambda s: s["c8"]["p50_us"] / 1e3),
            "p99_c8_ms": med(lambda s: s["c8"]["p99_us"] / 1e3),
            "rps_c1": round(statistics.median(s["c1"]["rps"] for s in samples), 1),
            "rps_c8": round(statistics.median(s["c8"]["rps"] for s in samples), 1),
            "cpu_ms_c8": med(lambda s: s["c8"].get("cpu_ms_per_request", 0.0)),
            "ttft_p50_ms": med(lambda s: s["stream"]["ttft_p50_ms"]),
            "stream_p50_ms": med(lambda s: s["stream"]["stream_p50_ms"]),
            "rounds": len(samples),
        }
    return summary


def overheads(summary: dict[str, dict]) -> dict[str, dict]:
    """What each configuration adds over calling the backend directly."""
    base = summary[DIRECT]
    return {
        name: {
            "p50_c1_ms": round(row["p50_c1_ms"] - base["p50_c1_ms"], 3),
            "ttft_ms": round(row["ttft_p50_ms"] - base["ttft_p50_ms"], 3),
            "stream_ms": round(row["stream_p50_ms"] - base["stream_p50_ms"], 3),
        }
        for name, row in summary.items() if name != DIRECT
    }


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b > 0 else None


def ratios(summary: dict[str, dict], over: dict[str, dict], extra: dict[str, dict]) -> dict[str, dict]:
    """Ours against each baseline (throughput: higher is better; overhead and RSS: lower is better)."""
    out = {}
    for base in BASELINES:
        if OURS in summary and base in summary:
            out[f"{OURS}/{base}"] = {
                "throughput": _ratio(summary[OURS]["rps_c8"], summary[base]["rps_c8"]),
                "cpu_capacity": _ratio(summary[base]["cpu_ms_c8"], summary[OURS]["cpu_ms_c8"]),
                "p50_overhead_c1": _ratio(over[OURS]["p50_c1_ms"], over[base]["p50_c1_ms"]),
                "ttft_overhead": _ratio(over[OURS]["ttft_ms"], over[base]["ttft_ms"]),
                "rss_per_worker": _ratio(extra[OURS].get("rss_per_worker_mb", 0), extra[base].get("rss_per_worker_mb", 0)),
                "startup": _ratio(extra[OURS].get("startup_s") or 0, extra[base].get("startup_s") or 0),
            }
    return out


def targets(summary: dict[str, dict], rat: dict[str, dict], routing: list[dict] | None = None) -> dict[str, dict]:
    """The issue's targets, each with the measured value and whether it is met."""
    checks = {}
    at_20k = [row["us"] for row in routing or () if row["chars"] == 20_000]
    if at_20k:
        checks["routing decision < 1 ms at 20k chars (ms)"] = (round(max(at_20k) / 1e3, 4), max(at_20k) < 1000)
    plain, tuned = rat.get(f"{OURS}/vanilla-plain"), rat.get(f"{OURS}/vanilla-tuned")
    if plain:
        checks["throughput >= 3.0x vanilla-plain"] = (plain["throughput"], plain["throughput"] is not None and plain["throughput"] >= 3.0)
        checks["p50 overhead <= 1/3 vanilla-plain"] = (plain["p50_overhead_c1"], _le(plain["p50_overhead_c1"], 1 / 3))
        checks["RSS per worker <= vanilla-plain"] = (plain["rss_per_worker"], _le(plain["rss_per_worker"], 1.0))
    if tuned:
        checks["throughput >= 1.5x vanilla-tuned"] = (tuned["throughput"], tuned["throughput"] is not None and tuned["throughput"] >= 1.5)
        checks["p50 overhead <= 2/3 vanilla-tuned"] = (tuned["p50_overhead_c1"], _le(tuned["p50_overhead_c1"], 2 / 3))
        checks["RSS per worker <= vanilla-tuned"] = (tuned["rss_per_worker"], _le(tuned["rss_per_worker"], 1.0))
    if OURS in summary and HOOKS_OFF in summary:
        added = round(summary[OURS]["p50_c1_ms"] - summary[HOOKS_OFF]["p50_c1_ms"], 3)
        checks["hooks add <= 1 ms p50"] = (added, added <= 1.0)
    return {name: {"value": value, "met": met} for name, (value, met) in checks.items()}


def _le(value: float | None, bound: float) -> bool:
    return value is not None and value <= bound


def table(summary: dict[str, dict], over: dict[str, dict], extra: dict[str, dict]) -> str:
    """A markdown table, one row per configuration."""
    head = ("| configuration | p50 c1 ms | p99 c1 ms | overhead p50 c1 ms | p50 c8 ms | p99 c8 ms | req/s c8 "
            "| CPU ms/req c8 | TTFT p50 ms | TTFT overhead ms | 50-chunk stream ms | RSS/worker MB (after start) "
            "| startup s |")
    lines = [head, "|" + "|".join("---" for _ in range(head.count("|") - 1)) + "|"]
    for name, row in summary.items():
        o, x = over.get(name, {}), extra.get(name, {})
        rss = f"{x['rss_per_worker_mb']} ({x.get('rss_after_start_mb')})" if x.get("rss_per_worker_mb") else None
        cells = [name, row["p50_c1_ms"], row["p99_c1_ms"], o.get("p50_c1_ms"), row["p50_c8_ms"], row["p99_c8_ms"],
                 row["rps_c8"], row["cpu_ms_c8"], row["ttft_p50_ms"], o.get("ttft_ms"), row["stream_p50_ms"],
                 rss, x.get("startup_s")]
        lines.append("| " + " | ".join("-" if c is None else str(c) for c in cells) + " |")
    return "\n".join(lines)


def ratio_table(rat: dict[str, dict], checks: dict[str, dict]) -> str:
    lines = ["| ours vs | throughput c8 | CPU capacity (their CPU/req ÷ ours) | p50 overhead c1 | TTFT overhead "
             "| RSS/worker | startup |", "|---|---|---|---|---|---|---|"]
    for name, r in rat.items():
        lines.append(f"| {name.split('/')[1]} | {r['throughput']}x | {r['cpu_capacity']}x | {r['p50_overhead_c1']}x "
                     f"| {r['ttft_overhead']}x "
                     f"| {r['rss_per_worker']}x | {r['startup']}x |")
    lines += ["", "| target | measured | met |", "|---|---|---|"]
    lines += [f"| {name} | {c['value']} | {'yes' if c['met'] else 'NO'} |" for name, c in checks.items()]
    return "\n".join(lines)
