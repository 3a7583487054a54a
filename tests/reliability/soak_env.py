"""What the soak runs against, and the faults it injects: real processes on loopback only.

- `Stack`: both emulators as their own processes (so one can be killed: connection refused),
  a redis-server, and a `gateway serve` with client keys, per-key limits in Redis and the
  ledger under a fresh DATA_DIR; every backend timeout is short so a hang costs seconds;
- `FaultInjector`: while the load runs, flips each tier's fault mode at random intervals via
  `POST /_emulator/fault`, only among modes whose outcome docs/reliability.md specifies, kills
  and restarts the Ollama emulator, and takes Redis down and back;
- `process_tree` and `rss`: the gateway's processes and their resident memory, from /proc.
"""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import yaml

from tests.harness import DEEPSEEK_KEY, LOG_DIR, MASTER_KEY, REPO, Gateway, free_port
from tests.redis_server import RedisServer
from tests.reliability.helpers import short_timeout_config

CLIENT_KEY = "sk-soak-client-7d2a9f4c1e8b3605"
LIMITED_KEY = "sk-soak-limited-3f6c0a8e2d9b5714"
LIMITED = {"rate_limit_requests": 20, "rate_limit_window": 10}  # low enough that 429s are part of the mix
KEY_WEIGHTS = {"client": 8, "limited": 1, "master": 1}

# "none" thrice: a tier is healthy about a quarter of the time, so both-tiers-down is one case among many.
OLLAMA_MODES = ("none", "none", "none", "http_500", "http_503", "http_404", "error_before_first_token", "cut",
                "error_mid_stream", "malformed", "slow", "hang", "down")
DEEPSEEK_MODES = ("none", "none", "none", "http_401", "http_402", "http_429", "http_500", "http_503",
                  "error_before_first_token", "cut", "error_mid_stream", "slow", "hang")


class EmulatorProcess:
    """`python -m emulators.<name>` on a fixed free port, so it can be killed and restarted there."""

    def __init__(self, module: str, *args: str) -> None:
        self.module, self.args = module, args
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = LOG_DIR / f"soak-{module.rsplit('.', 1)[-1]}-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", self.module, "--port", str(self.port), *self.args],
                                         cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/_emulator/fault", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.module} did not start on port {self.port}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=20)
        self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Stack:
    """Emulators, Redis and the gateway; `keys` maps the soak's key names to secrets."""

    def __init__(self, directory: Path, workers: int, backend_timeout: float) -> None:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.ollama = EmulatorProcess("emulators.ollama")
        self.deepseek = EmulatorProcess("emulators.deepseek", "--api-key", DEEPSEEK_KEY)
        self.redis = RedisServer("soak")
        self.data_dir = directory / "data"
        self.keys = {"client": CLIENT_KEY, "limited": LIMITED_KEY, "master": MASTER_KEY}
        self.directory, self.workers, self.backend_timeout = directory, workers, backend_timeout
        self.gateway: Gateway | None = None

    def __enter__(self) -> Stack:
        try:
            self.ollama.start()
            self.deepseek.start()
            self.redis.start()
            keys_file = self.directory / "keys.yaml"
            keys_file.write_text(yaml.safe_dump({"keys": [{"name": "soak-limited", "key": LIMITED_KEY, **LIMITED}]}))
            config = short_timeout_config(self.directory, self.backend_timeout, health_interval_seconds=2)
            env = {"OLLAMA_URL": self.ollama.url, "DEEPSEEK_URL": self.deepseek.url, "DEEPSEEK_API_KEY": DEEPSEEK_KEY,
                   "API_KEYS": CLIENT_KEY, "RATE_LIMIT_REQUESTS": "1000000", "KEYS_FILE": str(keys_file),
                   "REDIS_URL": self.redis.url, "DATA_DIR": str(self.data_dir), "LOG_LEVEL": "WARNING",
                   "PYTHONFAULTHANDLER": "1"}  # a worker that crashes leaves its Python stack in the log
            self.gateway = Gateway("soak", env, config=config, workers=self.workers).wait_ready()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.gateway is not None:
            self.gateway.stop()
        self.ollama.kill()
        self.deepseek.kill()
        self.redis.stop()


class FaultInjector:
    """Random faults in both tiers and Redis until `stop` is set; `heal()` undoes them all."""

    def __init__(self, stack: Stack, rng: random.Random, interval: tuple[float, float], redis_every: float,
                 timeout: float) -> None:
        self.stack, self.rng, self.interval, self.redis_every, self.timeout = stack, rng, interval, redis_every, timeout
        self.injected: Counter[str] = Counter()

    async def run(self, stop: asyncio.Event) -> None:
        async with httpx.AsyncClient(timeout=10) as client:
            loops = [self._tier(client, self.stack.ollama, "ollama", OLLAMA_MODES, stop),
                     self._tier(client, self.stack.deepseek, "deepseek", DEEPSEEK_MODES, stop)]
            if self.redis_every > 0:
                loops.append(self._redis(stop))
            await asyncio.gather(*loops)

    async def _tier(self, client, emulator: EmulatorProcess, tier: str, modes: tuple[str, ...], stop: asyncio.Event) -> None:
        while not stop.is_set():
            mode = self.rng.choice(modes)
            if not emulator.running:
                await asyncio.to_thread(emulator.start)  # comes back healthy
            if mode == "down":
                await asyncio.to_thread(emulator.kill)
            else:
                spec = {"mode": mode}
                if mode == "slow":  # within the first-token timeout (served) or beyond it (other tier)
                    spec["delay"] = self.rng.choice((0.3, 1.0, 2 * self.timeout))
                (await client.post(f"{emulator.url}/_emulator/fault", json=spec)).raise_for_status()
            self.injected[f"{tier}:{mode}"] += 1
            await _sleep(stop, self.rng.uniform(*self.interval))

    async def _redis(self, stop: asyncio.Event) -> None:
        while not await _sleep(stop, self.rng.uniform(0.5, 1.5) * self.redis_every):
            await asyncio.to_thread(self.stack.redis.stop)
            self.injected["redis:down"] += 1
            await _sleep(stop, self.rng.uniform(2, 5))
            await asyncio.to_thread(self.stack.redis.start)  # comes back empty: limits count from zero

    def heal(self) -> None:
        for emulator in (self.stack.ollama, self.stack.deepseek):
            if not emulator.running:
                emulator.start()
            httpx.post(f"{emulator.url}/_emulator/fault", json={"mode": "none"}, timeout=10).raise_for_status()
        if self.stack.redis.proc is None:
            self.stack.redis.start()


async def _sleep(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep unless stopped first; True when stopped."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return False
    return True


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants (uvicorn's workers), from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += children.get(pid, [])
    return tree


def rss(pids: list[int]) -> int:
    """Bytes resident in these processes."""
    total = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        total += next((int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    return total
