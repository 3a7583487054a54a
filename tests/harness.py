"""Start real gateway processes for end-to-end tests, the way users run them (`gateway serve`).

Every gateway writes its log to a file under the test session's log directory, so the
security tests can grep the whole session's logs for secrets afterwards.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import yaml

REPO = Path(__file__).resolve().parent.parent
LOG_DIR = Path(os.environ.get("GATEWAY_TEST_LOGS", "/tmp/gateway-test-logs"))
MASTER_KEY = "sk-master-test-5f1c2a9e7b3d4c6a8e0f1a2b3c4d5e6f"
DEEPSEEK_KEY = "sk-deepseek-test-0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d"
GATEWAY_BIN = Path(sys.executable).with_name("gateway")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dead_url() -> str:
    """A loopback URL where nothing listens (connection refused)."""
    return f"http://127.0.0.1:{free_port()}"


def write_config(directory: Path, **gateway_settings: object) -> Path:
    """A copy of the shipped config.yaml with some gateway_settings changed."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["gateway_settings"] = {**config.get("gateway_settings", {}), **gateway_settings}
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


class Emulator:
    """Control an emulator over its /_emulator endpoints."""

    def __init__(self, server) -> None:
        self.server = server
        self.url = server.url

    def fault(self, mode: str, **spec: object) -> None:
        httpx.post(f"{self.url}/_emulator/fault", json={"mode": mode, **spec}).raise_for_status()

    def config(self, **switches: object) -> None:
        """Realism switches (runner slots, token rate, context length, ...); reset() restores the defaults."""
        httpx.post(f"{self.url}/_emulator/config", json=switches).raise_for_status()

    def reset(self) -> None:
        httpx.post(f"{self.url}/_emulator/reset").raise_for_status()

    def stats(self) -> dict:
        return httpx.get(f"{self.url}/_emulator/stats").json()

    def chats(self, model: str | None = None) -> int:
        by_model = self.stats()["chat_by_model"]
        return sum(by_model.values()) if model is None else by_model.get(model, 0)


class Gateway:
    """A `gateway serve` subprocess on a free loopback port."""

    def __init__(self, name: str, env: dict[str, str], config: Path | None = None, workers: int = 1,
                 extra_args: tuple[str, ...] = ()) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = LOG_DIR / f"{name}-{self.port}.log"
        base = {k: v for k, v in os.environ.items() if not k.startswith(("DEEPSEEK", "OLLAMA", "API_KEYS", "LITELLM_MASTER"))}
        self.env = {**base, "HOST": "127.0.0.1", "PORT": str(self.port), "LITELLM_MASTER_KEY": MASTER_KEY,
                    "LOG_LEVEL": "INFO", **env}
        args = [str(GATEWAY_BIN), "serve", "--workers", str(workers), *extra_args]
        if config is not None:
            args += ["--config", str(config)]
        self._log = self.log_path.open("wb")
        # Run from an empty directory so a developer's own .env cannot leak into tests.
        self.cwd = LOG_DIR / f"cwd-{name}-{self.port}"
        self.cwd.mkdir(exist_ok=True)
        if config is None:
            shutil.copy(REPO / "config.yaml", self.cwd / "config.yaml")
        self.proc = subprocess.Popen(args, env=self.env, cwd=self.cwd, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def wait_ready(self, timeout: float = 90.0) -> Gateway:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway {self.name} exited {self.proc.returncode}:\n{self.log()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/health/readiness", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"gateway {self.name} not ready after {timeout}s:\n{self.log()[-3000:]}")

    def client(self, key: str = MASTER_KEY, **kwargs: object) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=key, max_retries=0, **kwargs)

    def post(self, path: str, json: object = None, key: str | None = MASTER_KEY, **kwargs: object) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.post(f"{self.url}{path}", json=json, headers=headers, timeout=30, **kwargs)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()
