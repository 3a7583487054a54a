"""`gateway demo`: the real gateway against the built-in emulators, showing each routing decision.

Needs neither Ollama nor a DeepSeek key: both backends are emulated on loopback (threads of this
process). The gateway runs as a real `gateway serve` process, in a session of its own, with a
throwaway master key.

How it fails: however the demo ends (its scenarios done, an error, Ctrl-C / SIGINT, SIGTERM), it
stops the gateway's whole process group (SIGTERM, then SIGKILL after 20 s) and the emulators, so
no child keeps running or keeps the port.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import typer

from emulators import deepseek, ollama
from emulators._common import serve_in_thread

SCENARIOS = [
    ("short prompt, model=auto", "auto", "What is 2 + 2?", None),
    ("long prompt, model=auto", "auto", "Review this code: " + "x = 1\n" * 120, None),
    ("cloud model by name", "deepseek-chat", "Hello", None),
    ("deepseek-r1:7b (a local model)", "deepseek-r1:7b", "Hello", None),
    ("Ollama answers 500", "auto", "Hello", ("ollama", "http_500")),
    ("DeepSeek out of balance (402), complex", "auto", "Explain: " + "y" * 600, ("deepseek", "http_402")),
]


def _wait_ready(url: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise typer.Exit(code=1)
        try:
            if httpx.get(f"{url}/health/readiness", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise typer.Exit(code=1)


def run_demo(port: int, keep: bool) -> None:
    deepseek_key, master_key = f"sk-demo-{secrets.token_hex(8)}", f"sk-demo-{secrets.token_hex(16)}"
    backends = {"ollama": serve_in_thread(ollama.create_app()),
                "deepseek": serve_in_thread(deepseek.create_app(api_key=deepseek_key))}
    env = {**os.environ, "OLLAMA_URL": backends["ollama"].url, "DEEPSEEK_URL": backends["deepseek"].url,
           "DEEPSEEK_API_KEY": deepseek_key, "LITELLM_MASTER_KEY": master_key, "HOST": "127.0.0.1", "PORT": str(port)}
    config = Path(__file__).resolve().parent.parent / "config.yaml"
    typer.echo(f"Starting the gateway on http://127.0.0.1:{port} with emulated Ollama and DeepSeek...")
    previous = signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM ends the demo as Ctrl-C does: cleanly
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve", "--config", str(config)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, proc)
        typer.echo(f"\n{'scenario':40} {'status':>6}  {'route':6} {'reason':22} served by")
        for title, model, prompt, fault in SCENARIOS:
            for server in backends.values():
                httpx.post(f"{server.url}/_emulator/reset")
            if fault:
                httpx.post(f"{backends[fault[0]].url}/_emulator/fault", json={"mode": fault[1]})
            r = httpx.post(f"{url}/v1/chat/completions", timeout=60, headers={"Authorization": f"Bearer {master_key}"},
                           json={"model": model, "messages": [{"role": "user", "content": prompt}]})
            served = r.json().get("model", "-") if r.status_code == 200 else r.json()["error"]["message"][:40]
            typer.echo(f"{title:40} {r.status_code:>6}  {r.headers.get('x-gateway-route', '?'):6} "
                       f"{r.headers.get('x-gateway-reason', '?'):22} {served}")
        if keep:
            typer.echo(f"\nThe demo gateway keeps running at {url}/v1 (key: {master_key}). Ctrl-C to stop.")
            proc.wait()
    except KeyboardInterrupt:
        typer.echo("\nStopping the demo gateway and the emulators...")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):  # a second signal must not cut the clean-up short
            signal.signal(sig, signal.SIG_IGN)
        _stop(proc)
        for server in backends.values():
            server.stop()
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _stop(proc: subprocess.Popen) -> None:
    """The gateway and its workers: its own process group (start_new_session), SIGTERM then SIGKILL."""
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
