"""The configurations under test, each a server process on a free loopback port.

- `direct`: the canned backend itself (Ollama's /api/chat), the floor;
- `vanilla-plain` / `vanilla-tuned`: `litellm --config bench/configs/vanilla-*.yaml` from this venv;
- `ours`: `gateway serve` with the shipped config.yaml and everything on (routing hook, API-key
  auth, Redis rate limits, ledger, metrics);
- `ours-hooks-off`: the same config with our callbacks and custom auth removed, and the ledger
  and metrics turned off (bench/hooks_off/sitecustomize.py), to measure what the hooks add.
Every server runs in its own empty directory (no `.env` leaks in) and logs to a file there.
`Server.start` raises RuntimeError with the log tail when a server exits or is not ready in time.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

from bench.load import Request

REPO = Path(__file__).resolve().parent.parent
CONFIGS = Path(__file__).with_name("configs")
BIN = Path(sys.executable).parent
MASTER_KEY = "sk-bench-master-7c1d9e0a2b4f4e6c8a1b3d5f7e9c0b2a"
CLIENT_KEY = "sk-bench-client-1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d"
DEEPSEEK_KEY = "sk-bench-deepseek-0f1e2d3c4b5a69788796a5b4c3d2e1f0"
MODEL = "qwen2.5:7b"
PROMPT = [{"role": "user", "content": "Say hello in five words."}]
_KEEP_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER")


def chat_body(stream: bool) -> bytes:
    return json.dumps({"model": MODEL, "messages": PROMPT, "max_tokens": 32, "stream": stream}).encode()


def ollama_body(stream: bool) -> bytes:
    return json.dumps({"model": MODEL, "messages": PROMPT, "stream": stream, "options": {"num_predict": 32}}).encode()


def hooks_off(config: dict) -> dict:
    """Our config without our hooks: callbacks and custom auth from this repository removed."""
    ours = ("hooks.", "proxy_config.")
    config = yaml.safe_load(yaml.safe_dump(config))
    litellm_settings = config.setdefault("litellm_settings", {})
    for key in ("callbacks", "success_callback", "failure_callback"):
        if isinstance(litellm_settings.get(key), list):
            litellm_settings[key] = [c for c in litellm_settings[key] if not str(c).startswith(ours)]
    general = config.setdefault("general_settings", {})
    if str(general.get("custom_auth", "")).startswith(ours):
        del general["custom_auth"]
    return config


@dataclass
class Server:
    """A benchmark target. `proc` is None for the direct backend (it is started elsewhere)."""

    name: str
    url: str
    request: Request
    stream: Request
    cmd: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    workers: int = 1
    proc: subprocess.Popen | None = None
    startup_s: float | None = None
    root_pid: int | None = None  # the process tree measured for RSS and CPU (the backend's, for direct)
    cpus: frozenset[int] | None = None  # CPU affinity of the server's processes (None: any)

    def start(self, timeout: float = 120.0) -> Server:
        if not self.cmd:
            return self
        assert self.cwd is not None
        log = (self.cwd / "server.log").open("wb")
        started = time.perf_counter()
        cpus = self.cpus
        self.proc = subprocess.Popen(self.cmd, env=self.env, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True,
                                     preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
        self.root_pid = self.proc.pid
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/health/readiness", timeout=2).status_code == 200:
                    self.startup_s = time.perf_counter() - started
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} not ready after {timeout}s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        path = (self.cwd or Path("/nonexistent")) / "server.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k in _KEEP_ENV}


def direct(backend_url: str, backend_pid: int | None = None) -> Server:
    return Server("direct", backend_url, Request(backend_url, "/api/chat", ollama_body(False)),
                  Request(backend_url, "/api/chat", ollama_body(True)), root_pid=backend_pid)


def vanilla(name: str, workdir: Path, backend_url: str, workers: int, tuned: bool) -> Server:
    port, cwd = _port(), workdir / name
    cwd.mkdir(parents=True, exist_ok=True)
    config = cwd / "config.yaml"
    config.write_text((CONFIGS / ("vanilla-tuned.yaml" if tuned else "vanilla-plain.yaml")).read_text())
    # LiteLLM 1.108 refuses to start without a master key, so vanilla authenticates with it too.
    env = {**_base_env(), "BENCH_OLLAMA_URL": backend_url, "LITELLM_MASTER_KEY": MASTER_KEY}
    if tuned:
        env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    url = f"http://127.0.0.1:{port}"
    cmd = [str(BIN / "litellm"), "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
           "--num_workers", str(workers)]
    return Server(name, url, Request(url, "/v1/chat/completions", chat_body(False), MASTER_KEY),
                  Request(url, "/v1/chat/completions", chat_body(True), MASTER_KEY), cmd, env, cwd, workers)


def ours(name: str, workdir: Path, backend_url: str, workers: int, redis_url: str | None, hooks: bool = True) -> Server:
    port, cwd = _port(), workdir / name
    cwd.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    (cwd / "config.yaml").write_text(yaml.safe_dump(config if hooks else hooks_off(config), sort_keys=False))
    env = {**_base_env(), "HOST": "127.0.0.1", "PORT": str(port), "OLLAMA_URL": backend_url,
           "DEEPSEEK_URL": backend_url, "DEEPSEEK_API_KEY": DEEPSEEK_KEY, "LITELLM_MASTER_KEY": MASTER_KEY,
           "DATA_DIR": str(cwd / "data")}
    key = MASTER_KEY
    if not hooks:
        env["PYTHONPATH"] = str(Path(__file__).with_name("hooks_off"))
    if hooks:
        key = CLIENT_KEY
        env.update({"API_KEYS": CLIENT_KEY, "RATE_LIMIT_REQUESTS": "1000000000", "RATE_LIMIT_WINDOW": "60"})
        if redis_url:
            env["REDIS_URL"] = redis_url
    url = f"http://127.0.0.1:{port}"
    cmd = [str(BIN / "gateway"), "serve", "--config", str(cwd / "config.yaml"), "--workers", str(workers)]
    return Server(name, url, Request(url, "/v1/chat/completions", chat_body(False), key),
                  Request(url, "/v1/chat/completions", chat_body(True), key), cmd, env, cwd, workers)


def rss_mb(server: Server) -> dict:
    """Resident memory of the server's process tree: total and per worker (MB)."""
    root = server.root_pid
    if root is None or server.proc is None:
        return {}
    rss = {pid: _rss_kb(pid) for pid in _tree(root)}
    total = sum(rss.values()) / 1024
    children = sorted((v for pid, v in rss.items() if pid != root), reverse=True)
    per_worker = total if server.workers == 1 or not children else sum(children[: server.workers]) / 1024 / server.workers
    return {"rss_total_mb": round(total, 1), "rss_per_worker_mb": round(per_worker, 1), "processes": len(rss)}


def cpu_seconds(server: Server) -> float:
    """User + system CPU time used so far by the server's process tree (live processes only)."""
    if server.root_pid is None:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in _tree(server.root_pid):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, ValueError, IndexError):
            continue
    return total / ticks


def _tree(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, ppid in parents.items() if ppid in frontier]
        found += frontier
    return found


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0
