"""The instant canned backend: nginx `return` with canned Ollama and OpenAI bodies.

One nginx worker answers everything the gateways and LiteLLM call:
- Ollama: `POST /api/chat` (one JSON object, or 50 NDJSON chunks when the body says
  `"stream": true`), `GET /api/tags`, `POST /api/show`, `GET /api/version`, `GET /`;
- OpenAI (DeepSeek's wire format): `POST /chat/completions` and `/v1/chat/completions`
  (one JSON object, or 50 SSE chunks), `GET /models`.
nginx cannot look at a request body in `return`, so the chat paths go through one internal
hop: the outer server reads the body (proxying does), maps `"stream": true` to a header, and
a second server on a unix socket picks the canned body by that header (streams are static
files: an nginx `return` string is limited to 4 KB). That hop is part of
the backend's own cost, which the benchmark reports as the `direct` row.

Fails loudly: `CannedBackend.start` raises RuntimeError with nginx's error log when nginx
does not come up.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx

MODEL = "qwen2.5:7b"
TAGS = ("qwen2.5:7b", "llama3.2:3b", "mistral:7b", "deepseek-r1:7b")
CHUNKS = 50
CREATED = "2025-01-01T00:00:00.000000Z"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def _line(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"))


def ollama_json() -> str:
    return _line({
        "model": MODEL, "created_at": CREATED,
        "message": {"role": "assistant", "content": "Hello! How can I help you today?"},
        "done": True, "done_reason": "stop", "total_duration": 1000000, "load_duration": 100000,
        "prompt_eval_count": 12, "prompt_eval_duration": 200000, "eval_count": 9, "eval_duration": 700000,
    })


def ollama_stream(chunks: int = CHUNKS) -> str:
    lines = [_line({"model": MODEL, "created_at": CREATED, "message": {"role": "assistant", "content": f"w{i} "},
                    "done": False}) for i in range(chunks)]
    lines.append(_line({"model": MODEL, "created_at": CREATED, "message": {"role": "assistant", "content": ""},
                        "done": True, "done_reason": "stop", "total_duration": 1000000, "load_duration": 100000,
                        "prompt_eval_count": 12, "prompt_eval_duration": 200000, "eval_count": chunks,
                        "eval_duration": 700000}))
    return "\n".join(lines) + "\n"


def openai_json() -> str:
    return _line({
        "id": "chatcmpl-bench", "object": "chat.completion", "created": 1735689600, "model": "deepseek-chat",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello! How can I help you today?"},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21},
    })


def openai_stream(chunks: int = CHUNKS) -> str:
    def chunk(delta: dict, finish: str | None = None, usage: dict | None = None) -> str:
        body = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1735689600,
                "model": "deepseek-chat", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        if usage:
            body["usage"] = usage
        return f"data: {_line(body)}\n\n"

    parts = [chunk({"role": "assistant", "content": ""})]
    parts += [chunk({"content": f"w{i} "}) for i in range(chunks)]
    parts.append(chunk({}, "stop", {"prompt_tokens": 12, "completion_tokens": chunks, "total_tokens": 12 + chunks}))
    return "".join(parts) + "data: [DONE]\n\n"


def ollama_tags() -> str:
    return _line({"models": [{"name": t, "model": t, "modified_at": CREATED, "size": 4683087332,
                              "digest": "0" * 64, "details": {"family": "qwen2", "parameter_size": "7.6B",
                                                              "quantization_level": "Q4_K_M"}} for t in TAGS]})


def ollama_show() -> str:
    return _line({"modelfile": "FROM qwen2.5:7b", "parameters": "", "template": "{{ .Prompt }} tools",
                  "details": {"family": "qwen2", "parameter_size": "7.6B", "quantization_level": "Q4_K_M"},
                  "model_info": {"general.architecture": "qwen2", "qwen2.context_length": 32768},
                  "capabilities": ["completion", "tools"]})


def _q(body: str) -> str:
    """An nginx single-quoted string; `$` would start a variable, so canned bodies must not use it."""
    assert "$" not in body, "canned bodies must not contain $"
    return "'" + body.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def render_nginx(directory: Path, port: int) -> str:
    sock = directory / "canned.sock"
    chat = f"""proxy_pass http://canned; proxy_http_version 1.1; proxy_set_header Connection "";
            proxy_set_header X-Bench-Kind $bench_kind; proxy_method GET; proxy_pass_request_body off;
            proxy_set_header Content-Length ""; proxy_buffering off;"""
    # As root, workers would drop to `nobody`, who cannot reach a socket under a private temp dir.
    user = "user root;" if os.geteuid() == 0 else ""
    return f"""
daemon off;
{user}
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {directory}/body; proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi; uwsgi_temp_path {directory}/uwsgi; scgi_temp_path {directory}/scgi;
    client_body_buffer_size 1m; client_max_body_size 8m;
    keepalive_requests 10000000; keepalive_timeout 300s;
    map $request_body $bench_kind {{ "~\\"stream\\"\\s*:\\s*true" stream; default json; }}
    upstream canned {{ server unix:{sock}; keepalive 64; keepalive_requests 10000000; }}
    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096;
        default_type application/json;
        location = /api/chat {{ {chat} }}
        location = /chat/completions {{ {chat} }}
        location = /v1/chat/completions {{ {chat} }}
        location = /api/tags {{ return 200 {_q(ollama_tags())}; }}
        location = /api/show {{ return 200 {_q(ollama_show())}; }}
        location = /api/version {{ return 200 '{{"version":"0.12.6"}}'; }}
        location = /models {{ return 200 '{{"object":"list","data":[{{"id":"deepseek-chat","object":"model","owned_by":"deepseek"}}]}}'; }}
        location = / {{ default_type text/plain; return 200 'Ollama is running'; }}
    }}
    server {{
        listen unix:{sock};
        root {directory}/static;
        open_file_cache max=16 inactive=1h; open_file_cache_valid 1h;
        default_type application/json;
        location = /api/chat {{
            if ($http_x_bench_kind = stream) {{ rewrite ^ /_ollama_stream last; }}
            return 200 {_q(ollama_json())};
        }}
        location = /_ollama_stream {{ internal; default_type application/x-ndjson; }}
        location ~ ^(/v1)?/chat/completions$ {{
            if ($http_x_bench_kind = stream) {{ rewrite ^ /_openai_stream last; }}
            return 200 {_q(openai_json())};
        }}
        location = /_openai_stream {{ internal; default_type text/event-stream; }}
    }}
}}
"""


class CannedBackend:
    """One nginx process serving the canned bodies on 127.0.0.1:port."""

    def __init__(self, directory: Path, port: int) -> None:
        self.directory = directory
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> CannedBackend:
        self.directory.mkdir(parents=True, exist_ok=True)
        conf = self.directory / "nginx.conf"
        static = self.directory / "static"
        static.mkdir(exist_ok=True)
        (static / "_ollama_stream").write_text(ollama_stream())
        (static / "_openai_stream").write_text(openai_stream())
        conf.write_text(render_nginx(self.directory, self.port))
        out = (self.directory / "stderr.log").open("wb")
        self.proc = subprocess.Popen([NGINX, "-p", str(self.directory), "-c", str(conf)],
                                     stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if httpx.get(f"{self.url}/api/version", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.05)
        self.stop()
        logs = [p.read_text() for p in (self.directory / "stderr.log", self.directory / "error.log") if p.exists()]
        raise RuntimeError("nginx canned backend did not start: " + " ".join(logs).strip())

    def pids(self) -> list[int]:
        return [self.proc.pid] if self.proc else []

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
