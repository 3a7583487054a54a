"""`gateway doctor` and `gateway demo` as a newcomer runs them."""

from __future__ import annotations

import json
import subprocess

import httpx

from tests.harness import DEEPSEEK_KEY, GATEWAY_BIN, MASTER_KEY, REPO, dead_url, free_port


def run(args: list[str], env: dict, cwd) -> subprocess.CompletedProcess:
    base = {"PATH": "/usr/bin:/bin", "LITELLM_MASTER_KEY": MASTER_KEY}
    return subprocess.run([str(GATEWAY_BIN), *args], capture_output=True, text=True, env={**base, **env},
                          cwd=cwd, timeout=120)


def test_doctor_reports_missing_default_model_and_rejected_key(ollama, deepseek, tmp_path):
    httpx.post(f"{ollama.url}/_emulator/models", json={"models": ["llama3.2:3b", "deepseek-r1:7b"]})
    env = {"OLLAMA_URL": ollama.url, "DEEPSEEK_URL": deepseek.url, "DEEPSEEK_API_KEY": "sk-wrong-key-000000"}
    result = run(["doctor", "--json", "--config", str(REPO / "config.yaml")], env, tmp_path)
    findings = {f["what"]: f for f in json.loads(result.stdout)}
    assert result.returncode == 1
    assert findings["ollama"]["ok"] and findings["model llama3.2:3b"] == {"what": "model llama3.2:3b", "ok": True, "detail":
        "installed; Ollama reports [tools], context 131072; config.yaml has [json_schema, tools], window 8192"}
    assert findings["model deepseek-r1:7b"]["ok"] is True  # thinking, no tools: as config.yaml says
    assert findings["model qwen2.5:7b"]["ok"] is False  # the local default: `auto` needs it
    assert "run `gateway models pull qwen2.5:7b` or set LOCAL_DEFAULT_MODEL" in findings["model qwen2.5:7b"]["detail"]
    assert findings["model mistral:7b"] == {  # optional models are information, not a failure
        "what": "model mistral:7b", "ok": True,
        "detail": "not installed (requests for it go to the cloud); to serve it locally: `gateway models pull mistral:7b`"}
    assert "rejected DEEPSEEK_API_KEY (401)" in findings["deepseek"]["detail"]
    assert "sk-wrong-key-000000" not in result.stdout + result.stderr


def test_doctor_passes_when_everything_is_reachable(ollama, deepseek, tmp_path):
    env = {"OLLAMA_URL": ollama.url, "DEEPSEEK_URL": deepseek.url, "DEEPSEEK_API_KEY": DEEPSEEK_KEY}
    result = run(["doctor", "--config", str(REPO / "config.yaml")], env, tmp_path)
    assert result.returncode == 0, result.stdout
    assert result.stdout.count("ok  ") == 1 + 1 + 6 + 1 + 1  # config, ollama, 6 local models, deepseek, litellm shims
    assert "ok  model qwen2.5:3b: not installed" in result.stdout
    shims_line = next(line for line in result.stdout.splitlines() if line.startswith("ok  litellm shims: LiteLLM "))
    assert "shims that apply: malloc-arenas, middlewares, otel-seed, ollama-static-lookup, route-checks, " \
        "coordination-redis, deployment-usage, proxy-hooks, deployment-objects, free-deployment-cost, bridge-check, " \
        "inline-thinking, completion-text, litellm-info-logs, inline-completion" in shims_line
    assert "NOT applying" not in shims_line


def test_doctor_explains_unreachable_ollama(tmp_path):
    result = run(["doctor", "--config", str(REPO / "config.yaml")], {"OLLAMA_URL": dead_url()}, tmp_path)
    assert result.returncode == 1
    assert "FIX ollama: cannot reach Ollama" in result.stdout and "set OLLAMA_URL in .env" in result.stdout


def test_demo_shows_every_routing_decision(tmp_path):
    result = run(["demo", "--port", str(free_port())], {}, tmp_path)
    lines = {line[:40].strip(): line.split() for line in result.stdout.splitlines() if line[40:47].strip().isdigit()}
    assert result.returncode == 0, result.stdout + result.stderr
    assert lines["short prompt, model=auto"][-3:] == ["local", "simple", "qwen2.5:7b"]
    assert lines["long prompt, model=auto"][-3:] == ["cloud", "complexity", "deepseek-chat"]
    assert lines["Ollama answers 500"][-3:] == ["cloud", "local-error-fallback", "deepseek-chat"]
    assert lines["DeepSeek out of balance (402), complex"][-3:] == ["local", "cloud-error-fallback", "qwen2.5:7b"]
