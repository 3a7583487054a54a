"""`gateway report`: what the gateway served and what that saved, from the request ledger.

Reads the ledger (hooks.ledger_store: SQLite under DATA_DIR, or PostgreSQL with DATABASE_URL)
for a period and prints requests and tokens by route, model and key, fallbacks by cause,
cloud spend and the savings against sending everything to the cloud default model, as a
table, CSV or JSON. `--plot FILE.png` draws savings and the local/cloud share over time
(gateway.report_plot). Aggregation is one pass over the period's rows (`Summary`).
A missing or unreadable ledger stops with exit code 1 and a message saying where it looked.
"""

from __future__ import annotations

import csv
import io
import re
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from enum import StrEnum

import typer

from custom_router.policy import fallback_tiers
from hooks.cost_rules import cloud_spend_by_key, month_start_ts

UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class Format(StrEnum):
    TABLE = "table"
    CSV = "csv"
    JSON = "json"


def parse_since(text: str) -> float:
    """`30m`, `24h`, `7d`, `2w` -> seconds."""
    match = re.fullmatch(r"\s*(\d+)\s*([mhdw])\s*", text or "")
    if not match or int(match.group(1)) == 0:
        raise typer.BadParameter(f"{text!r} is not a period; use a number and a unit, e.g. 30m, 24h, 7d or 2w")
    return int(match.group(1)) * UNITS[match.group(2)]


def failed(row: Mapping) -> bool:
    """An error status, or a 200 stream that broke after it started (error_type set)."""
    return (row["status"] or 0) >= 400 or row.get("error_type") is not None


@dataclass
class Totals:
    requests: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float = 0.0
    saved_usd: float = 0.0
    cache_hits: int = 0
    cache_saved_usd: float = 0.0

    def add(self, row: Mapping) -> None:
        self.requests += 1
        self.errors += int(failed(row))
        self.prompt_tokens += row["prompt_tokens"] or 0
        self.completion_tokens += row["completion_tokens"] or 0
        self.reasoning_tokens += row["reasoning_tokens"] or 0
        self.cost_usd += row["cost_usd"] or 0.0
        self.saved_usd += row["saved_usd"] or 0.0
        self.cache_hits += int(row.get("cache") == "hit")
        self.cache_saved_usd += row.get("cache_saved_usd") or 0.0


@dataclass
class Summary:
    """One pass over ledger rows; `bucket_seconds` > 0 also builds the timeline for --plot."""

    since: float
    until: float
    bucket_seconds: int = 0
    total: Totals = field(default_factory=Totals)
    by_route: dict[str, Totals] = field(default_factory=dict)
    by_model: dict[str, Totals] = field(default_factory=dict)
    by_key: dict[str, Totals] = field(default_factory=dict)
    fallbacks: Counter = field(default_factory=Counter)
    by_kind: dict[str, Totals] = field(default_factory=dict)  # simple / complex requests served (the seed's table)
    spilled: Totals = field(default_factory=Totals)  # sent to the cloud because the local tier was busy (local-busy)
    timeline: dict[int, dict[str, float]] = field(default_factory=dict)

    def add(self, row: Mapping) -> None:
        self.total.add(row)
        for table, name in ((self.by_route, row["route"]), (self.by_model, row["served_model"] or "(not served)"),
                            (self.by_key, row["key_hash"] or "(no key)")):
            table.setdefault(name or "none", Totals()).add(row)
        kind = request_kind(row)
        if kind is not None:
            self.by_kind.setdefault(kind, Totals()).add(row)
        if row["reason"] == "local-busy":
            self.spilled.add(row)
        if row["fallback_cause"]:
            self.fallbacks[(*fallback_tiers(row["route"], row["reason"] or ""), row["fallback_cause"])] += 1
        if self.bucket_seconds:
            start = int(row["ts"] // self.bucket_seconds * self.bucket_seconds)
            point = self.timeline.setdefault(start, {"local": 0, "cloud": 0, "saved_usd": 0.0, "cloud_spend_usd": 0.0})
            if row["route"] in ("local", "cloud") and not failed(row):
                point[row["route"]] += 1
            point["saved_usd"] += row["saved_usd"] or 0.0
            point["cloud_spend_usd"] += (row["cost_usd"] or 0.0) if row["route"] == "cloud" else 0.0

    def as_dict(self) -> dict:
        local, cloud = self.by_route.get("local", Totals()), self.by_route.get("cloud", Totals())
        served = (local.requests - local.errors) + (cloud.requests - cloud.errors)
        cloud_only = self.total.cost_usd + self.total.saved_usd + self.total.cache_saved_usd
        return {
            "period": {"since": _iso(self.since), "until": _iso(self.until)},
            "totals": asdict(self.total),
            "by_route": _tables(self.by_route),
            "by_model": _tables(self.by_model),
            "by_key": _tables(self.by_key),
            "fallbacks": [{"from_tier": f, "to_tier": t, "cause": c, "requests": n}
                          for (f, t, c), n in sorted(self.fallbacks.items())],
            "cost_comparison": {
                "cloud_spend_usd": cloud.cost_usd,
                "local_cost_usd": local.cost_usd,
                "actual_usd": self.total.cost_usd,
                "cloud_only_usd": cloud_only,
                "saved_usd": self.total.saved_usd,
                "saved_pct": 100 * self.total.saved_usd / cloud_only if cloud_only else 0.0,
                "local_share": (local.requests - local.errors) / served if served else 0.0,
                "cache_hits": self.total.cache_hits,
                "cache_saved_usd": self.total.cache_saved_usd,
                "spilled_share": self.spilled.requests / self.total.requests if self.total.requests else 0.0,
                "spilled_cost_usd": self.spilled.cost_usd,
            },
            "per_1000": per_1000(self.by_kind),
        }


SIMPLE_REASONS = frozenset({"simple"})
COMPLEX_REASONS = frozenset({"complexity", "context-window", "cloud-only"})


def request_kind(row: Mapping) -> str | None:
    """The seed's classes: a served request the policy found simple (local) or complex (cloud)."""
    if failed(row):
        return None
    reason = row["reason"] or ""
    return "simple" if reason in SIMPLE_REASONS else "complex" if reason in COMPLEX_REASONS else None


def per_1000(by_kind: Mapping[str, Totals]) -> list[dict]:
    """The original design's comparison, from real traffic: 1,000 simple, 1,000 complex and 1,000 of the
    observed mix, each priced cloud-only (every token at the cloud default's prices) and with the gateway
    (what was paid), the difference split into local and cache savings. Empty when no request qualifies."""
    rows = []
    mix = Totals()
    for kind in ("simple", "complex"):
        t = by_kind.get(kind)
        if t is None or not t.requests:
            continue
        for name in ("requests", "cost_usd", "saved_usd", "cache_saved_usd"):
            setattr(mix, name, getattr(mix, name) + getattr(t, name))
        rows.append(_per_1000_row(f"1,000 {kind}", t))
    if len(rows) == 2:
        share = by_kind["simple"].requests / mix.requests
        rows.append(_per_1000_row(f"1,000 mixed ({100 * share:.0f}% simple, as observed)", mix))
    return rows


def _per_1000_row(name: str, t: Totals) -> dict:
    scale = 1000 / t.requests
    return {"requests": name, "observed": t.requests,
            "cloud_only_usd": (t.cost_usd + t.saved_usd + t.cache_saved_usd) * scale,
            "with_gateway_usd": t.cost_usd * scale, "local_saved_usd": t.saved_usd * scale,
            "cache_saved_usd": t.cache_saved_usd * scale}


def summarize(rows: Iterable[Mapping], since: float, until: float, bucket_seconds: int = 0) -> Summary:
    summary = Summary(since, until, bucket_seconds)
    for row in rows:
        if since <= row["ts"] <= until:
            summary.add(row)
    return summary


def _tables(tables: dict[str, Totals]) -> dict[str, dict]:
    return {name: asdict(t) for name, t in sorted(tables.items(), key=lambda item: -item[1].requests)}


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


COLUMNS = ("requests", "errors", "prompt_tokens", "completion_tokens", "reasoning_tokens", "cost_usd", "saved_usd")


def render_csv(data: dict) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("section", "name", *COLUMNS))
    writer.writerow(("total", "all", *(data["totals"][c] for c in COLUMNS)))
    for section in ("route", "model", "key"):
        for name, totals in data[f"by_{section}"].items():
            writer.writerow((section, name, *(totals[c] for c in COLUMNS)))
    for fb in data["fallbacks"]:
        writer.writerow(("fallback", f"{fb['from_tier']}->{fb['to_tier']}:{fb['cause']}", fb["requests"], *[""] * 6))
    for name, value in data["cost_comparison"].items():
        writer.writerow(("cost", name, value, *[""] * 6))
    for row in data["per_1000"]:
        writer.writerow(("per_1000", row["requests"], row["observed"], row["cloud_only_usd"], row["with_gateway_usd"],
                         row["local_saved_usd"], row["cache_saved_usd"], "", ""))
    for b in data.get("budgets", []):
        writer.writerow(("budget", b["name"], b["spent_usd"], b["budget_usd"], b["remaining_usd"], b["month"],
                         "", "", ""))
    return out.getvalue()


def render_table(data: dict) -> str:
    period = data["period"]
    lines = [f"Gateway report {period['since']} .. {period['until']}", ""]
    head = ("", "requests", "errors", "prompt tok", "completion tok", "reasoning tok", "cost USD", "saved USD")
    for section in ("route", "model", "key"):
        rows = [(name, *(_cell(t[c]) for c in COLUMNS)) for name, t in data[f"by_{section}"].items()]
        rows.append(("total", *(_cell(data["totals"][c]) for c in COLUMNS)))
        lines += _aligned((f"by {section}", *head[1:]), rows) + [""]
    if data["fallbacks"]:
        rows = [(f"{f['from_tier']} -> {f['to_tier']}", f["cause"], str(f["requests"])) for f in data["fallbacks"]]
        lines += _aligned(("fallbacks", "cause", "requests"), rows) + [""]
    cmp = data["cost_comparison"]
    lines += _aligned(("cost comparison", "USD"), [
        ("cloud-only (everything on the cloud default)", _cell(cmp["cloud_only_usd"])),
        ("actual: cloud spend", _cell(cmp["cloud_spend_usd"])),
        ("actual: local cost (local_cost_per_1k_tokens)", _cell(cmp["local_cost_usd"])),
        ("saved", f"{_cell(cmp['saved_usd'])} ({cmp['saved_pct']:.1f}%)"),
        ("saved by the response cache", f"{_cell(cmp['cache_saved_usd'])} ({cmp['cache_hits']} hits)"),
        ("served locally", f"{100 * cmp['local_share']:.1f}% of requests"),
        ("spilled to the cloud, local tier busy (local-busy)",
         f"{100 * cmp['spilled_share']:.1f}% of requests, {_cell(cmp['spilled_cost_usd'])}"),
    ])
    if data["per_1000"]:
        lines += [""] + _aligned(("per 1,000 requests (USD)", "observed", "cloud-only", "with gateway", "local saved",
                                  "cache saved"), [(r["requests"], str(r["observed"]), *(_cell(r[c]) for c in (
                                      "cloud_only_usd", "with_gateway_usd", "local_saved_usd", "cache_saved_usd")))
                                                   for r in data["per_1000"]])
    if data.get("budgets"):
        month = data["budgets"][0]["month"]
        lines += [""] + _aligned((f"cloud budgets, {month} (USD)", "id", "spent", "budget", "left",
                                  "resets"), [(b["name"], b["id"], f"{b['spent_usd']:.2f}", f"{b['budget_usd']:.2f}",
                                               f"{b['remaining_usd']:.2f}", b["resets"]) for b in data["budgets"]])
    return "\n".join(lines)


def budget_rows(settings, spend: Mapping[str, float], now: float) -> list[dict]:
    """Each client key with a cloud budget, its spend this month (from the ledger) and what is left."""
    from hooks.cost_rules import month_of, reset_text
    from proxy_config.keys import load_keys

    rows = []
    for key in load_keys(settings).keys.values():
        if key.budget is not None:
            spent = spend.get(key.id, 0.0)
            rows.append({"name": key.name, "id": key.id, "month": month_of(now), "spent_usd": spent,
                         "budget_usd": key.budget, "remaining_usd": max(key.budget - spent, 0.0),
                         "resets": reset_text(now)})
    return rows


def _cell(value: object) -> str:
    return f"{value:.6f}" if isinstance(value, float) else str(value)


def _aligned(head: tuple, rows: list[tuple]) -> list[str]:
    widths = [max(len(str(r[i])) for r in (head, *rows)) for i in range(len(head))]
    fmt = lambda r: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return [fmt(head), "  ".join("-" * w for w in widths), *(fmt(r) for r in rows)]


def budget_status(settings, table, name: str | None = None) -> list[dict]:
    """`gateway keys budget`: each key's (or the named key's) budget and this month's cloud spend; no ledger yet = 0."""
    from hooks.cost_rules import month_of, reset_text
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
