"""`gateway demo` stops everything it started when it gets SIGTERM or SIGINT (issue 13): its gateway (a
`gateway serve` with its workers) is gone and the port is free again."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

import httpx
import pytest

from tests.harness import GATEWAY_BIN, MASTER_KEY, free_port


def descendants(pid: int) -> set[int]:
    """Every process below `pid` (from /proc), so a gateway started in its own session is counted too."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_demo_stops_its_gateway_and_frees_the_port_on_a_signal(tmp_path, sig):
    port = free_port()
    demo = subprocess.Popen([str(GATEWAY_BIN), "demo", "--port", str(port), "--keep"], cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={"PATH": "/usr/bin:/bin", "LITELLM_MASTER_KEY": MASTER_KEY})
    children: set[int] = set()
    try:
        for line in demo.stdout:
            if "keeps running" in line:
                break
        else:
            pytest.fail(f"the demo ended early with {demo.wait()}")
        assert httpx.get(f"http://127.0.0.1:{port}/health/liveliness", timeout=5).status_code == 200
        children = descendants(demo.pid)
        assert children  # the gateway (and its workers, if any)
        demo.send_signal(sig)
        assert demo.wait(timeout=60) == 0
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert [pid for pid in children if alive(pid)] == []
        assert port_is_free(port)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        for pid in children | descendants(demo.pid):  # never leave a gateway behind, even when the test fails
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
