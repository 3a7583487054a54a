"""`gateway report --plot`: savings and the local/cloud share over time, as a PNG.

Uses matplotlib's Agg backend (no display needed). Top: cumulative USD saved and cloud
spend per time bucket; bottom: share of successful requests served locally vs in the cloud.
An empty period still draws both axes, with a note, so a script never gets a missing file.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)


def draw(summary, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    starts = sorted(summary.timeline)
    times = [_utc(s) for s in starts]
    ends = [_utc(s + summary.bucket_seconds) for s in starts]
    points = [summary.timeline[s] for s in starts]
    width = summary.bucket_seconds / 86400 * 0.9  # bar width in days (matplotlib date units)

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), sharex=True, constrained_layout=True)
    saved, running = [], 0.0
    for p in points:
        running += p["saved_usd"]
        saved.append(running)
    top.plot(ends, saved, color="tab:green", marker="o", label="saved (cumulative)")
    top.bar(times, [p["cloud_spend_usd"] for p in points], width=width, align="edge", color="tab:red", alpha=0.5,
            label="cloud spend per bucket")
    top.set_ylabel("USD")
    top.set_title("Savings against cloud-only")
    top.legend(loc="upper left")

    served = [max(p["local"] + p["cloud"], 1) for p in points]
    local = [100 * p["local"] / n for p, n in zip(points, served)]
    cloud = [100 * p["cloud"] / n for p, n in zip(points, served)]
    bottom.bar(times, local, width=width, align="edge", color="tab:blue", label="local")
    bottom.bar(times, cloud, width=width, align="edge", bottom=local, color="tab:orange", label="cloud")
    bottom.set_xlim(_utc(summary.since), _utc(summary.until))
    bottom.set_ylabel("% of served requests")
    bottom.set_ylim(0, 100)
    bottom.set_title("Local / cloud share")
    bottom.legend(loc="upper left")
    if not points:
        for ax in (top, bottom):
            ax.text(0.5, 0.5, "no requests in this period", ha="center", va="center", transform=ax.transAxes)
    fig.autofmt_xdate()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)
