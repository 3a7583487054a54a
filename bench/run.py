"""One benchmark invocation: start the backend and every configuration, measure them in
interleaved rounds, and return the results as one JSON-ready dict.

Interleaving: each round measures every configuration once (concurrency 1, concurrency 8,
then the stream probe), rotating the order between rounds, so a burst of background load on
the machine hits all configurations alike. Every process this starts is stopped on the way out,
also on errors.
"""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench import backend as canned
from bench import report
from bench import routing as routing_bench
from bench.load import stream_probe, wrk
from bench.targets import Server, _port, cpu_seconds, direct, ours, rss_mb, vanilla

ALL = ("direct", "vanilla-plain", "vanilla-tuned", "ours", "ours-hooks-off")


@dataclass(frozen=True)
class Options:
    rounds: int = 3
    instances: int = 1  # servers started per configuration; numbers are medians over instances and rounds
    seconds: float = 5.0
    workers: int = 1
    stream_requests: int = 100
    warmup_seconds: float = 3.0
    configurations: tuple[str, ...] = ALL
    keep_dir: bool = False
    pin: bool = True  # servers on their own CPUs, load generator and backends on CPU 0, when there are enough


def placement(workers: int, pin: bool) -> tuple[frozenset[int], frozenset[int]] | None:
    """(load-side CPUs, server CPUs), or None when pinning is off or there are too few CPUs."""
    cpus = sorted(os.sched_getaffinity(0))
    if not pin or len(cpus) < workers + 1:
        return None
    return frozenset(cpus[:1]), frozenset(cpus[1:1 + workers])


def machine() -> dict:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    from importlib.metadata import version

    wrk_version = subprocess.run([shutil.which("wrk") or "wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[0]
    return {"cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version(),
            "litellm": version("litellm"), "uvicorn": version("uvicorn"), "wrk": wrk_version.split(" [")[0].strip(),
            "nginx": subprocess.run([canned.NGINX, "-v"], capture_output=True, text=True).stderr.strip()
            .removeprefix("nginx version: "),
            "load_avg_at_start": os.getloadavg(), "mem_total_mb": _mem_total_mb()}


def _mem_total_mb() -> int:
    line = next(ln for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal"))
    return int(line.split()[1]) // 1024


class Redis:
    """A throwaway redis-server for our rate limits (no persistence)."""

    def __init__(self, directory: Path) -> None:
        self.port = _port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", str(directory)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
        import socket

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


def sanity(server: Server) -> dict:
    """One request before measuring: it must succeed, and ours must route it to the local tier."""
    response = httpx.post(server.request.url + server.request.path, content=server.request.body,
                          headers=server.request.headers(), timeout=30)
    if response.status_code != 200:
        raise RuntimeError(f"{server.name}: sanity request got HTTP {response.status_code}: {response.text[:500]}\n"
                           f"{server.log_tail()}")
    route = response.headers.get("x-gateway-route")
    if server.name == "ours" and route != "local":
        raise RuntimeError(f"{server.name}: expected x-gateway-route local, got {route!r}")
    return {"status": response.status_code, "x-gateway-route": route}


def measured(server: Server, load: Callable[[], dict]) -> dict:
    """A wrk run plus the server's CPU time per request, which machine load disturbs far less than req/s."""
    before = cpu_seconds(server)
    result = load()
    result["cpu_ms_per_request"] = (cpu_seconds(server) - before) * 1e3 / max(1, result["requests"])
    return result


def process_figures(instances: list[Server], idle_rss: list[float | None]) -> dict:
    """RSS after the load and after start, and startup time: medians over a configuration's instances."""
    def median(values):
        values = [v for v in values if v is not None]
        return round(statistics.median(values), 2) if values else None

    after = [rss_mb(s) for s in instances]
    return {"rss_total_mb": median(a.get("rss_total_mb") for a in after),
            "rss_per_worker_mb": median(a.get("rss_per_worker_mb") for a in after),
            "processes": max((a.get("processes", 0) for a in after), default=0),
            "rss_after_start_mb": median(idle_rss), "startup_s": median(s.startup_s for s in instances),
            "instances": len(instances)}


def run(options: Options, progress: Callable[[str], None] = print) -> dict:
    info = machine()
    workdir = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    started: list[Server] = []
    backend = redis = None
    own_cpus = os.sched_getaffinity(0)
    cpus = placement(options.workers, options.pin)
    info["placement"] = ({"load_generator_and_backends": sorted(cpus[0]), "servers": sorted(cpus[1])}
                         if cpus else "unpinned")
    try:
        if cpus:
            os.sched_setaffinity(0, cpus[0])  # inherited by nginx, redis-server and wrk
        backend = canned.CannedBackend(workdir / "nginx", _port()).start()
        redis = Redis(workdir) if "ours" in options.configurations else None
        factories = {  # d: the instance's own parent directory
            "direct": lambda d: direct(backend.url, backend.proc.pid if backend.proc else None),
            "vanilla-plain": lambda d: vanilla("vanilla-plain", d, backend.url, options.workers, tuned=False),
            "vanilla-tuned": lambda d: vanilla("vanilla-tuned", d, backend.url, options.workers, tuned=True),
            "ours": lambda d: ours("ours", d, backend.url, options.workers, redis.url if redis else None),
            "ours-hooks-off": lambda d: ours("ours-hooks-off", d, backend.url, options.workers, None, hooks=False),
        }
        idle_rss: dict[str, list[float]] = {}
        for name in options.configurations:
            for i in range(1 if name == "direct" else options.instances):
                progress(f"starting {name} #{i + 1}")
                server = factories[name](workdir / f"instance-{i}")
                if cpus and server.cmd:
                    server.cpus = cpus[1]
                started.append(server)
                server.start()  # one at a time, so startup times do not compete
                sanity(server)
                idle_rss.setdefault(name, []).append(rss_mb(server).get("rss_per_worker_mb"))
        for server in started:
            progress(f"warming up {server.name}")
            wrk(server.request, workdir / f"{server.name}.body", 8, options.warmup_seconds)
        samples: dict[str, list[dict]] = {s.name: [] for s in started}
        for r in range(options.rounds):
            order = started[r % len(started):] + started[: r % len(started)]
            for server in order:
                progress(f"round {r + 1}/{options.rounds}: {server.name}")
                body = workdir / f"{server.name}.body"
                samples[server.name].append({
                    "c1": measured(server, lambda: wrk(server.request, body, 1, options.seconds)),
                    "c8": measured(server, lambda: wrk(server.request, body, 8, options.seconds)),
                    "stream": stream_probe(server.stream, options.stream_requests),
                })
        extra = {name: process_figures([s for s in started if s.name == name], idle_rss.get(name, []))
                 for name in samples}
        summary = report.summarize(samples)
        over = report.overheads(summary) if "direct" in summary else {}
        rat = report.ratios(summary, over, extra) if over else {}
        progress("routing micro-benchmark")
        routing = routing_bench.run()
        info["load_avg_at_end"] = os.getloadavg()
        return {
            "finished_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "machine": info,
            "options": options.__dict__ | {"configurations": list(options.configurations)},
            "summary": summary, "overheads": over, "process": extra, "ratios": rat,
            "targets": report.targets(summary, rat, routing), "samples": samples, "routing": routing,
        }
    finally:
        os.sched_setaffinity(0, own_cpus)
        for server in reversed(started):
            server.stop()
        if redis:
            redis.stop()
        if backend:
            backend.stop()
        if not options.keep_dir:
            shutil.rmtree(workdir, ignore_errors=True)
