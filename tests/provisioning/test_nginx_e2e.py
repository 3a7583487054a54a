"""A real nginx running the rendered site (`gateway render nginx`) in front of a real gateway.

The Ollama emulator waits between chunks, so a stream that nginx buffered would arrive all at
once at the end; these tests check it arrives spread out, and that plain HTTP redirects to HTTPS.
The site is rendered with small edge limits and a 2 s upstream keepalive_timeout so that the
limits (429 with an OpenAI-shaped body) and nginx closing idle upstream connections first can be
seen in a few seconds.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

from emulators import ollama as ollama_emulator
from emulators._common import serve_in_thread
from tests.harness import GATEWAY_BIN, MASTER_KEY, Gateway, dead_url, free_port
from tests.provisioning.conftest import self_signed_cert

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")]
CHUNK_DELAY = 0.25
KEEPALIVE_TIMEOUT_S = 2
LIMIT_REQ_RATE, LIMIT_REQ_BURST, LIMIT_CONN = 5, 10, 3


@dataclass
class Proxy:
    https: str
    http_port: int
    https_port: int
    cert: Path
    gateway_port: int
    error_log: Path
    gateway: Gateway


def wait_for_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nginx exited {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nginx is not listening on {port}: {log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    tmp = tmp_path_factory.mktemp("nginx")
    tmp.chmod(0o755)
    emulator = serve_in_thread(ollama_emulator.create_app(chunk_delay=CHUNK_DELAY))
    gateway = Gateway("nginx-e2e", {"OLLAMA_URL": emulator.url, "DEEPSEEK_URL": dead_url()})
    cert, key = self_signed_cert(tmp)
    http_port, https_port = free_port(), free_port()
    rendered = subprocess.run([str(GATEWAY_BIN), "render", "nginx", "--out", str(tmp), "--listen-address", "127.0.0.1",
                               "--http-port", str(http_port), "--https-port", str(https_port), "--certificate", str(cert),
                               "--certificate-key", str(key), "--upstream-port", str(gateway.port),
                               "--upstream-keepalive-timeout", f"{KEEPALIVE_TIMEOUT_S}s", "--limit-req-rate", f"{LIMIT_REQ_RATE}r/s",
                               "--limit-req-burst", str(LIMIT_REQ_BURST), "--limit-conn", str(LIMIT_CONN)],
                              capture_output=True, text=True, timeout=60)
    assert rendered.returncode == 0, rendered.stderr
    user = "user root;\n" if os.geteuid() == 0 else ""
    temp_paths = "".join(f" {kind}_temp_path {tmp}/{kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (tmp / "nginx.conf").write_text(
        f"{user}worker_processes 1;\npid {tmp}/nginx.pid;\nerror_log {tmp}/error.log;\nevents {{ worker_connections 256; }}\n"
        f"http {{\n access_log {tmp}/access.log;\n{temp_paths} include {tmp}/ai-gateway.conf;\n}}\n")
    log = tmp / "error.log"
    nginx = subprocess.Popen(["nginx", "-p", str(tmp), "-e", str(log), "-c", str(tmp / "nginx.conf"), "-g", "daemon off;"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_port(https_port, nginx, log)
        gateway.wait_ready()
        yield Proxy(f"https://127.0.0.1:{https_port}", http_port, https_port, cert, gateway.port, log, gateway)
    finally:
        nginx.send_signal(signal.SIGQUIT)
        try:
            nginx.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(nginx.pid, signal.SIGKILL)
        gateway.stop()
        emulator.stop()


def trust(proxy: Proxy) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(proxy.cert))


def test_sse_stream_through_nginx_arrives_chunk_by_chunk(proxy: Proxy) -> None:
    client = openai.OpenAI(base_url=f"{proxy.https}/v1", api_key=MASTER_KEY, max_retries=0,
                           http_client=httpx.Client(verify=trust(proxy), timeout=60))
    arrivals: list[float] = []
    text = ""
    stream = client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "hi"}], stream=True)
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic())
            text += chunk.choices[0].delta.content
    assert text == "Hello from qwen2.5:7b." + " word" * 8
    assert len(arrivals) >= 8
    # The emulator sleeps CHUNK_DELAY between chunks: unbuffered, they arrive spread over about
    # (n-1) * CHUNK_DELAY; buffered by nginx, they would all arrive together at the end.
    spread = arrivals[-1] - arrivals[0]
    assert spread >= (len(arrivals) - 1) * CHUNK_DELAY * 0.5
    first_half = sum(1 for t in arrivals if t - arrivals[0] < spread / 2)
    assert 2 <= first_half <= len(arrivals) - 2


def test_plain_http_redirects_to_https_with_path_and_query(proxy: Proxy) -> None:
    response = httpx.get(f"http://127.0.0.1:{proxy.http_port}/v1/models?x=1", follow_redirects=False)
    assert response.status_code == 301
    assert response.headers["location"] == f"https://127.0.0.1:{proxy.https_port}/v1/models?x=1"


def test_https_responses_carry_security_headers_and_hide_the_nginx_version(proxy: Proxy) -> None:
    response = httpx.get(f"{proxy.https}/health/liveliness", verify=trust(proxy))
    assert response.status_code == 200
    assert response.headers["strict-transport-security"] == "max-age=31536000"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["server"] == "nginx"


def upstream_connections(port: int, state: str = "established") -> int:
    """Connections to the gateway's port in `state` (ss from iproute2)."""
    result = subprocess.run(["ss", "-tanH", "state", state, f"( dport = :{port} )"], capture_output=True, text=True, timeout=10)
    assert result.returncode == 0, result.stderr
    return len([line for line in result.stdout.splitlines() if line.strip()])


def test_nginx_closes_idle_upstream_connections_before_the_gateway_does(proxy: Proxy) -> None:
    if shutil.which("ss") is None:
        pytest.skip("ss (iproute2) is not installed")
    time.sleep(1.0)  # limit_req: start with a refilled bucket
    with httpx.Client(verify=trust(proxy), timeout=30) as client:
        assert client.get(f"{proxy.https}/health/liveliness").status_code == 200
        assert upstream_connections(proxy.gateway_port) >= 1  # kept alive by nginx for reuse
        time.sleep(KEEPALIVE_TIMEOUT_S + 1.5)
        # nginx's keepalive_timeout (2 s here) closed it; the gateway (75 s) would have waited much longer.
        assert upstream_connections(proxy.gateway_port) == 0
        response = client.post(f"{proxy.https}/v1/chat/completions", headers={"Authorization": f"Bearer {MASTER_KEY}"},
                               json={"model": "auto", "messages": [{"role": "user", "content": "hi"}]})
        assert response.status_code == 200, response.text


def test_the_gateway_keeps_an_idle_connection_longer_than_uvicorns_old_5_s_default(proxy: Proxy) -> None:
    """`gateway serve` sets timeout_keep_alive explicitly (75 s), above nginx's upstream keepalive_timeout."""
    conn = http.client.HTTPConnection("127.0.0.1", proxy.gateway_port, timeout=10)
    try:
        conn.request("GET", "/health/liveliness")
        first = conn.getresponse()
        assert first.status == 200 and first.read()
        sock = conn.sock
        time.sleep(6.5)
        conn.request("GET", "/health/liveliness")  # on the same socket; had the gateway closed it, this raises
        second = conn.getresponse()
        assert second.status == 200 and second.read()
        assert conn.sock is sock  # uvicorn's default (5 s) would have closed it
    finally:
        conn.close()


def edge_error(response: httpx.Response) -> None:
    assert response.status_code == 429
    body = response.json()
    assert body["error"]["type"] == "rate_limit_error" and body["error"]["code"] == "edge_rate_limited"
    assert set(body["error"]) == {"message", "type", "param", "code"}


def test_limit_req_answers_429_with_an_openai_shaped_error_beyond_the_burst(proxy: Proxy) -> None:
    time.sleep(LIMIT_REQ_BURST / LIMIT_REQ_RATE + 0.5)  # a full bucket
    with httpx.Client(verify=trust(proxy), timeout=30) as client:
        responses = [client.get(f"{proxy.https}/health/liveliness") for _ in range(30)]
    statuses = [r.status_code for r in responses]
    assert set(statuses) == {200, 429}
    # The burst (10) plus the first request, plus what the rate refills while the 30 requests run.
    assert LIMIT_REQ_BURST + 1 <= statuses.count(200) <= 24, statuses
    assert statuses.index(429) >= LIMIT_REQ_BURST + 1
    edge_error(responses[statuses.index(429)])
    assert "limiting requests" in proxy.error_log.read_text()


def test_limit_conn_caps_requests_in_flight_per_address(proxy: Proxy) -> None:
    time.sleep(LIMIT_REQ_BURST / LIMIT_REQ_RATE + 0.5)
    results: list[httpx.Response] = []
    lock = threading.Lock()

    def stream() -> None:
        with httpx.Client(verify=trust(proxy), timeout=60) as client:
            response = client.post(f"{proxy.https}/v1/chat/completions", headers={"Authorization": f"Bearer {MASTER_KEY}"},
                                   json={"model": "auto", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
            with lock:
                results.append(response)

    threads = [threading.Thread(target=stream) for _ in range(LIMIT_CONN + 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    statuses = sorted(r.status_code for r in results)
    assert len(statuses) == LIMIT_CONN + 3
    # Each stream holds its slot for about 10 * CHUNK_DELAY, so at most LIMIT_CONN run at once.
    assert statuses.count(200) >= 1 and statuses.count(429) >= 1, statuses
    assert set(statuses) == {200, 429}
    edge_error(next(r for r in results if r.status_code == 429))
    assert "limiting connections by zone" in proxy.error_log.read_text()
    assert all(json.loads(line[6:]) for r in results if r.status_code == 200 for line in r.text.splitlines()
               if line.startswith("data: {"))


def test_the_gateway_log_has_one_json_line_per_event(proxy: Proxy) -> None:
    """LiteLLM's own handler (its JSON has a `component` key) never writes: each event is one line, ours."""
    lines = proxy.gateway.log().splitlines()
    # LiteLLM print()s its model list at startup (not a log record): the only non-JSON lines.
    records = [json.loads(line) for line in lines if line.startswith("{")]
    others = [line for line in lines if not line.startswith("{")]
    assert all(line.startswith("\x1b[32m") and "LiteLLM" in lines[lines.index(others[0])] for line in others), others[:5]
    assert records and all({"ts", "level", "logger", "message"} <= set(r) for r in records)
    assert not [r for r in records if "component" in r]
    startup = [r for r in records if r["message"].startswith("Current GC thresholds")]
    assert len(startup) == 1  # one worker, one line (it was written twice before issue 14)
