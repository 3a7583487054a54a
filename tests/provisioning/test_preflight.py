"""What the roles refuse before they change anything, and `gateway check`'s weak-key refusal.

- Known, short and low-entropy secrets: the rule is proxy_config/weak_keys.py; the roles reach it
  through ansible/filter_plugins.
- A firewall that would not open the SSH port the play is using.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from proxy_config.weak_keys import weak_reason
from tests.harness import GATEWAY_BIN, MASTER_KEY, REPO

VENV_BIN = Path(sys.executable).parent
EXAMPLE_VAULT = yaml.safe_load((REPO / "ansible/inventory/example/group_vars/ai_gateway/vault.yml").read_text())


@pytest.mark.parametrize(("value", "why"), [
    (EXAMPLE_VAULT["vault_gateway_master_key"], "published in this repository"),
    (EXAMPLE_VAULT["vault_redis_requirepass"], "published in this repository"),
    ("sk-" + "CHANGEME" * 5, "placeholder"),
    ("sk-" + secrets.token_hex(8), "fewer than 32"),
    ("k7" * 24, "repeats a short pattern"),
    ("sk-0123456789abcdefghijklmnopqrstuvwxyz", "run of 8"),
    ("sk-aaaabbbbaaaabbbbaaaaccccaaaabbbbaaaab", "too little entropy"),
])
def test_weak_values_are_refused_with_a_reason_and_the_way_to_generate_one(value: str, why: str) -> None:
    reason = weak_reason(value, "LITELLM_MASTER_KEY")
    assert reason is not None and why in reason
    assert "openssl rand -hex 32" in reason and value not in reason


def test_generated_keys_and_the_test_suites_keys_pass() -> None:
    assert weak_reason(MASTER_KEY) is None
    assert [v for v in (f"sk-{secrets.token_hex(32)}" for _ in range(2000)) if weak_reason(v)] == []


def _check(tmp_path: Path, key: str, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(GATEWAY_BIN), "check", "--config", str(REPO / "config.yaml"), *flags], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "LITELLM_MASTER_KEY": key}, cwd=tmp_path, timeout=120)


def test_gateway_check_refuses_the_example_master_key_unless_allow_weak_keys(tmp_path: Path) -> None:
    example = EXAMPLE_VAULT["vault_gateway_master_key"]
    refused = _check(tmp_path, example)
    assert refused.returncode == 1
    assert "error: LITELLM_MASTER_KEY is a value published in this repository's examples" in refused.stderr
    assert "--allow-weak-keys" in refused.stderr and example not in refused.stderr + refused.stdout
    allowed = _check(tmp_path, example, "--allow-weak-keys")
    assert allowed.returncode == 0, allowed.stderr
    assert "warning: LITELLM_MASTER_KEY is a value published" in allowed.stderr
    assert _check(tmp_path, "sk-short-1234").returncode == 1
    assert _check(tmp_path, MASTER_KEY).returncode == 0


def preflight(tmp_path: Path, tag: str, *extra: str) -> subprocess.CompletedProcess:
    """Only the role's preflight asserts (tag <role>_preflight), on localhost without become: nothing is changed."""
    if not (VENV_BIN / "ansible-playbook").exists():
        pytest.skip("ansible-core is not installed in the venv (requirements-test.txt)")
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("ai_gateway:\n  hosts:\n    example-host:\n      ansible_connection: local\n"
                         f"      ansible_python_interpreter: {sys.executable}\n")
    group_vars = REPO / "ansible/inventory/example/group_vars/ai_gateway"
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}", "ANSIBLE_CONFIG": str(REPO / "ansible/ansible.cfg"),
           "ANSIBLE_NOCOLOR": "1"}
    return subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), "site.yml", "--tags", f"{tag}_preflight",
                           "-e", f"@{group_vars / 'main.yml'}", "-e", f"@{group_vars / 'vault.yml'}", "-e", "ansible_become=false", *extra],
                          cwd=REPO / "ansible", env=env, capture_output=True, text=True, timeout=300)


def test_the_firewall_refuses_to_close_the_ssh_port_the_play_uses(tmp_path: Path) -> None:
    refused = preflight(tmp_path, "firewall", "-e", "ansible_port=2222", "-e", "firewall_ssh_port=22")
    assert refused.returncode == 2, refused.stdout[-3000:]
    assert "This play reaches the host on TCP 2222, but the firewall would open only 22, 80, 443" in refused.stdout
    accepted = preflight(tmp_path, "firewall", "-e", "ansible_port=2222")  # firewall_ssh_port follows ansible_port
    assert accepted.returncode == 0, accepted.stdout[-3000:]
    assert "TASK [firewall : Refuse a ruleset that would close the SSH port this play is using]" in accepted.stdout
    assert "failed=0" in accepted.stdout and "changed=0" in accepted.stdout


def test_the_playbook_refuses_the_example_inventorys_secrets(tmp_path: Path) -> None:
    """The example inventory as an operator would copy it: the roles stop before changing anything."""
    results = {}
    for tag in ("gateway", "redis"):
        result = preflight(tmp_path, tag)
        results[tag] = result.stdout + result.stderr
        assert result.returncode == 2, results[tag][-3000:]
    assert "gateway_master_key is a value published in this repository's examples" in results["gateway"]
    assert "redis_requirepass is a value published in this repository's examples" in results["redis"]
    for output in results.values():
        assert EXAMPLE_VAULT["vault_gateway_master_key"] not in output and EXAMPLE_VAULT["vault_redis_requirepass"] not in output
