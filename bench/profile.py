"""Profile one configuration under load with py-spy: `python -m bench.profile ours --seconds 20`.

It starts the canned backend and the configuration (as the benchmark does), warms it up, then
records it with `py-spy record --gil` (samples only the thread holding the GIL, i.e. what limits
a worker's throughput) while wrk keeps 8 connections busy. It prints the functions with the
largest inclusive share and writes the raw stacks (flamegraph.pl / speedscope input) to --out.
Needs py-spy (requirements-test.txt); raises RuntimeError when py-spy or a server fails.
"""

from __future__ import annotations

import collections
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from bench import backend as canned
from bench.load import wrk
from bench.run import Redis, sanity
from bench.targets import _port, ours, vanilla

SITE = re.compile(r"^.*?site-packages/")


def _frame(frame: str) -> str:
    return SITE.sub("", re.sub(r":\d+\)", ")", frame))


def top_frames(raw: Path, limit: int = 40) -> list[tuple[float, str]]:
    """Inclusive share of each function over all samples of a py-spy raw (collapsed) file."""
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        if not line.strip():
            continue
        stack, count = line.rsplit(" ", 1)
        total += int(count)
        for frame in {_frame(f) for f in stack.split(";")}:
            inclusive[frame] += int(count)
    return [(100 * n / max(1, total), frame) for frame, n in inclusive.most_common(limit)]


def profile(
    configuration: Annotated[str, typer.Argument(help="ours, ours-hooks-off, vanilla-plain or vanilla-tuned.")],
    seconds: Annotated[int, typer.Option(min=5, help="Seconds to record under load.")] = 20,
    out: Annotated[Path, typer.Option(help="Where to write py-spy's raw stacks.")] = Path("profile.txt"),
    top: Annotated[int, typer.Option(help="How many functions to print.")] = 60,
    concurrency: Annotated[int, typer.Option(min=1, help="wrk connections while recording.")] = 8,
) -> None:
    """Record a py-spy profile of one configuration under wrk load (concurrency 8 by default)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        raise RuntimeError("py-spy is not installed: pip install -r requirements-test.txt")
    workdir = Path(tempfile.mkdtemp(prefix="gateway-profile-"))
    backend = canned.CannedBackend(workdir / "nginx", _port()).start()
    redis = Redis(workdir)
    factories = {
        "ours": lambda: ours("ours", workdir, backend.url, 1, redis.url),
        "ours-hooks-off": lambda: ours("ours-hooks-off", workdir, backend.url, 1, None, hooks=False),
        "vanilla-plain": lambda: vanilla("vanilla-plain", workdir, backend.url, 1, tuned=False),
        "vanilla-tuned": lambda: vanilla("vanilla-tuned", workdir, backend.url, 1, tuned=True),
    }
    server = factories[configuration]()
    try:
        server.start()
        sanity(server)
        wrk(server.request, workdir / "body", 8, 3)
        recorder = subprocess.Popen([spy, "record", "--gil", "--nonblocking", "-r", "200", "-f", "raw", "-d",
                                     str(seconds), "-p", str(server.root_pid), "-o", str(out)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        result = wrk(server.request, workdir / "body", concurrency, seconds)
        if recorder.wait(timeout=seconds + 60) != 0:
            raise RuntimeError("py-spy failed (it needs ptrace: run as root or with CAP_SYS_PTRACE)")
    finally:
        server.stop()
        redis.stop()
        backend.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    typer.echo(f"{configuration}: {result['rps']:.1f} req/s at c{concurrency} while recording; raw stacks in {out}")
    for share, frame in top_frames(out, top):
        typer.echo(f"{share:5.1f}%  {frame}")


if __name__ == "__main__":
    typer.run(profile)
