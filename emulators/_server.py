"""Running an emulator: in a test's thread or as a CLI process.

Owns `serve_in_thread` / `RunningServer` (tests) and the CLI plumbing
(`build_parser`, `fault_from_args`, `run_cli`) that prints
`ready http://HOST:PORT` once listening.

How it fails: `serve_in_thread` raises RuntimeError when the server does not
listen within `timeout` (port taken, bad host); `run_cli` exits with uvicorn's
own error for the same causes.  `RunningServer.stop` forces the exit so that
hanging requests never block a test's teardown.
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
from dataclasses import dataclass
from typing import Any

import uvicorn

__all__ = ["RunningServer", "build_parser", "fault_from_args", "run_cli", "serve_in_thread"]


@dataclass
class RunningServer:
    server: uvicorn.Server
    thread: threading.Thread
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self, timeout: float = 5.0) -> None:
        self.server.should_exit = True
        self.server.force_exit = True      # do not wait for hanging requests
        self.thread.join(timeout)

    def __enter__(self) -> "RunningServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _server(app: Any, host: str, port: int) -> uvicorn.Server:
    return uvicorn.Server(uvicorn.Config(
        app, host=host, port=port, log_level="warning", lifespan="off",
        timeout_graceful_shutdown=1))


def _bound_port(server: uvicorn.Server) -> int:
    return next(sock.getsockname()[1] for srv in server.servers for sock in srv.sockets)


def serve_in_thread(app: Any, host: str = "127.0.0.1", port: int = 0,
                    timeout: float = 10.0) -> RunningServer:
    """Run `app` with uvicorn in a daemon thread; return once it listens."""
    server = _server(app, host, port)
    thread = threading.Thread(target=server.run, name=f"emulator-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"emulator did not start on {host}:{port}")
        time.sleep(0.01)
    return RunningServer(server, thread, host, _bound_port(server))


def build_parser(module: str, description: str, default_port: int) -> argparse.ArgumentParser:
    """Flags shared by both emulators: --host --port --fault --delay --fault-delay
    --after-tokens --status --seconds --interval."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=default_port, help="0 = any free port")
    parser.add_argument("--fault", default="none", help="initial fault mode")
    parser.add_argument("--delay", type=float, default=0.0,
                        help="seconds between streamed chunks")
    parser.add_argument("--fault-delay", type=float, default=5.0,
                        help="seconds for the slow/keepalive faults")
    parser.add_argument("--after-tokens", type=int, default=3,
                        help="chunks sent before cut/error_mid_stream")
    parser.add_argument("--status", type=int, default=500,
                        help="HTTP status of error_status_before_first_token")
    parser.add_argument("--seconds", type=float, default=None,
                        help="busy_keepalive: seconds busy (0 = until the client goes)")
    parser.add_argument("--interval", type=float, default=1.0,
                        help="busy_keepalive: seconds between keep-alives")
    return parser


def fault_from_args(args: argparse.Namespace) -> dict:
    return {"mode": args.fault, "delay": args.fault_delay, "after_tokens": args.after_tokens,
            "status": args.status, "seconds": args.seconds, "interval": args.interval}



def run_cli(app: Any, host: str, port: int) -> None:
    """Serve in the foreground; print `ready http://HOST:PORT` once listening."""
    server = _server(app, host, port)

    async def main() -> None:
        task = asyncio.ensure_future(server.serve())
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        if server.started:
            print(f"ready http://{host}:{_bound_port(server)}", flush=True)
        await task

    asyncio.run(main())
