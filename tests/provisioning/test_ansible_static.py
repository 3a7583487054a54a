"""Static checks of ansible/: ansible-lint's production profile, syntax check, the sizing rules."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def ansible_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}", "ANSIBLE_CONFIG": str(REPO / "ansible/ansible.cfg"),
            "ANSIBLE_NOCOLOR": "1", "NO_COLOR": "1", **extra}


@pytest.fixture(autouse=True)
def _needs_ansible() -> None:
    if not (VENV_BIN / "ansible-playbook").exists() or not (VENV_BIN / "ansible-lint").exists():
        pytest.skip("ansible-core / ansible-lint are not installed in the venv (requirements-test.txt)")


def test_ansible_lint_production_profile_passes() -> None:
    result = subprocess.run([str(VENV_BIN / "ansible-lint"), "--profile", "production", "--offline", "ansible/"],
                            cwd=REPO, env=ansible_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "Profile 'production' was required, and it passed" in result.stderr + result.stdout


def test_site_playbook_passes_syntax_check() -> None:
    result = subprocess.run([str(VENV_BIN / "ansible-playbook"), "--syntax-check", "-i", "inventory/example/hosts.yml", "site.yml"],
                            cwd=REPO / "ansible", env=ansible_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "playbook: site.yml" in result.stdout


def fixture_messages(playbook: str, extra_vars: dict) -> list:
    """Run a fixture playbook on localhost; the `msg` of each item of its first task."""
    result = subprocess.run([str(VENV_BIN / "ansible-playbook"), str(FIXTURES / playbook), "-e", json.dumps(extra_vars)],
                            cwd=REPO / "ansible", env=ansible_env(ANSIBLE_STDOUT_CALLBACK="json",
                                                               ANSIBLE_INVENTORY_UNPARSED_WARNING="False",
                                                               ANSIBLE_LOCALHOST_WARNING="False"),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    task = json.loads(result.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
    return [item["msg"] for item in task["results"]]


def test_ollama_models_and_limits_follow_ram_and_cores() -> None:
    hosts = [{"memory_mb": 7900, "vcpus": 4}, {"memory_mb": 15900, "vcpus": 8}, {"memory_mb": 23900, "vcpus": 12},
             {"memory_mb": 31900, "vcpus": 16}, {"memory_mb": 80000, "vcpus": 32}]
    sized = fixture_messages("ollama-sizing.yml", {"sizing_hosts": hosts})
    embed = ["nomic-embed-text:latest"]  # pulled on every host (config.yaml's /v1/embeddings model)
    assert [s["models"] for s in sized] == [
        ["qwen2.5:3b", *embed], ["qwen2.5:7b", *embed], ["qwen2.5:7b", "llama3.2:3b", *embed],
        ["qwen2.5:7b", "llama3.2:3b", "mistral:7b", *embed], ["qwen2.5:7b", "llama3.2:3b", "mistral:7b", "deepseek-r1:7b", *embed]]
    # The 12-core / 24 GB target host: 2 parallel slots, 2 models loaded, queue 16/core capped by 8/GB.
    assert {k: int(sized[2][k]) for k in ("num_parallel", "max_loaded_models", "max_queue")} == {
        "num_parallel": 2, "max_loaded_models": 2, "max_queue": 184}
    assert [int(s["max_loaded_models"]) for s in sized] == [1, 2, 2, 3, 3]
    assert int(sized[4]["max_queue"]) == 512


def test_redis_bind_follows_the_redis_each_release_ships() -> None:
    """Ubuntu 22.04 ships Redis 6.0.16, which exits on "-::1" (optional addresses came in 6.2);
    Debian 12 and Ubuntu 24.04 ship 7.0.15 (the versions of their redis-server packages)."""
    versions = ["Redis server v=6.0.16 sha=00000000:0 malloc=jemalloc-5.2.1 bits=64 build=a3fdef44459b3ad6",
                "Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64 build=c4bd1d8b7e0a9bd8",
                "Redis server v=6.2.0 sha=00000000:0 malloc=jemalloc-5.1.0 bits=64 build=1", ""]
    assert fixture_messages("version-rules.yml", {"redis_versions": versions}) == ["127.0.0.1", "127.0.0.1 -::1", "127.0.0.1 -::1", "127.0.0.1"]


def test_models_are_sized_by_vram_on_a_gpu_host() -> None:
    gpu = {"vendor": "nvidia", "driver": True, "uvm_loaded": True}
    hosts = [{"memory_mb": 7900, "vcpus": 4, "gpu": {**gpu, "vram_mb": 8188}},      # 8 GB card on a small host
             {"memory_mb": 64000, "vcpus": 16, "gpu": {**gpu, "vram_mb": 6144}},    # big host, small card
             {"memory_mb": 23900, "vcpus": 12, "gpu": {**gpu, "vram_mb": 24564}}]   # the target host with a 24 GB card
    result = subprocess.run([str(VENV_BIN / "ansible-playbook"), str(FIXTURES / "ollama-sizing.yml"),
                             "-e", json.dumps({"sizing_hosts": hosts})],
                            cwd=REPO / "ansible", env=ansible_env(ANSIBLE_STDOUT_CALLBACK="json", ANSIBLE_INVENTORY_UNPARSED_WARNING="False",
                                                               ANSIBLE_LOCALHOST_WARNING="False"),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    task = json.loads(result.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
    assert [item["msg"]["models"][:-1] for item in task["results"]] == [
        ["qwen2.5:7b"], ["qwen2.5:3b"], ["qwen2.5:7b", "llama3.2:3b", "mistral:7b", "deepseek-r1:7b"]]
