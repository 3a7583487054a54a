"""The real converge: ansible/site.yml applied to a debootstrapped Debian 12 root (chroot connection).

Services are not started (policy-rc.d exits 101, *_service_manage: false); everything else is
real: apt packages, users, the venv installed by pip from requirements.lock (offline wheelhouse),
config.yaml, the 0600 environment file, units, nginx site, Redis and nftables configuration.
Then, inside the root, the checks a release needs; and a second apply must change nothing.
After that, in the same root: `--check --diff` (clean, no secret printed), an upgrade to a new
release (its own venv, switched by symlink) and a broken release that fails the health gate and
is rolled back. Needs root; see docs/provisioning.md for how long it takes.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator

import pytest
import yaml

from tests.harness import GATEWAY_BIN, LOG_DIR, REPO
from tests.provisioning.converge import Converge, missing_prerequisites

pytestmark = pytest.mark.converge
UNITS = ("/etc/systemd/system/ai-gateway.service", "/etc/systemd/system/ollama.service")


@pytest.fixture(scope="module")
def converged() -> Iterator[Converge]:
    why = missing_prerequisites()
    if why:
        pytest.skip(why)
    started = time.monotonic()
    converge = Converge.create("pytest")
    try:
        extra = converge.extra_vars()
        converge.apply(extra)
        converge.apply(extra)
        converge.releases = {"first": release_link(converge)}
        converge.apply(extra, "--check", "--diff")
        converge.apply(extra, "--tags", "nginx")
        # An upgrade: the same code plus one file is a new source revision, hence a new release; and a new Ollama.
        upgrade = {**extra, **converge.ollama_release("0.32.8"),
                   "gateway_source_archive": converge.release_archive("upgrade", {"RELEASE-NOTE": b"upgrade test\n"})}
        converge.apply(upgrade)
        converge.releases["upgrade"] = release_link(converge)
        # A broken release: installs fine, but its `gateway check` cannot even import; the gate must roll back.
        broken_check = (REPO / "proxy_config/check.py").read_bytes() + b"\nthis release is broken(\n"
        broken = {**upgrade, "gateway_source_archive": converge.release_archive("broken", {"proxy_config/check.py": broken_check})}
        converge.apply(broken, expect_failure=True)
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        timings = ", ".join(f"apply {n}: {seconds:.0f} s" for n, (_, _, seconds) in enumerate(converge.applies, 1))
        (LOG_DIR / "converge-timing.txt").write_text(f"{timings}; total {time.monotonic() - started:.0f} s\n")
        yield converge
    finally:
        converge.teardown(keep=os.environ.get("GATEWAY_CONVERGE_KEEP") == "1")


def release_link(converge: Converge) -> str:
    return os.readlink(converge.root / "opt/ai-gateway/venv")


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


def test_first_apply_changes_the_host_and_second_apply_changes_nothing(converged: Converge) -> None:
    first, second = converged.applies[0][0], converged.applies[1][0]
    assert first.changed > 20
    assert second.changed == 0, converged.applies[1][1][-6000:]
    assert second.failed == 0


def test_check_diff_on_the_converged_root_is_clean_and_prints_no_secret(converged: Converge) -> None:
    recap, output, _ = converged.applies[2]
    assert "--- before" in output or "changed=0" in output  # --diff was on
    assert (recap.changed, recap.failed) == (0, 0), output[-6000:]
    secrets = yaml.safe_load((REPO / "tests/provisioning/fixtures/converge-vars.yml").read_text())
    for name in ("gateway_master_key", "redis_requirepass"):
        for n, (_, apply_output, _) in enumerate(converged.applies, 1):
            assert secrets[name] not in apply_output, f"{name} printed by apply {n}"


def test_tags_re_apply_one_role_only(converged: Converge) -> None:
    recap, output, _ = converged.applies[3]
    # Ansible validates every role's arguments whatever the tags; besides that, only nginx runs, and
    # ollama's `always` fact (the gateway's local default model).
    roles = set(re.findall(r"^TASK \[(\w+) : (?!Validating arguments)", output, re.M))
    assert roles == {"nginx", "ollama"}, roles
    assert "TASK [ollama : Record the models chosen for this host" in output
    assert (recap.changed, recap.failed) == (0, 0)


def test_ollama_upgrade_fetched_sha256sum_txt_and_removed_the_old_version(converged: Converge) -> None:
    output = converged.applies[4][1]
    assert "TASK [ollama : Read the release's sha256sum.txt" in output
    assert os.readlink(converged.root / "usr/local/bin/ollama") == "/opt/ollama/0.32.8/bin/ollama"
    assert sorted(p.name for p in (converged.root / "opt/ollama").iterdir()) == ["0.32.8"]
    assert sorted(p.name for p in (converged.root / "var/cache/ollama").iterdir()) == ["0.32.8"]


def test_each_release_has_its_own_venv_and_the_upgrade_switched_the_link(converged: Converge) -> None:
    first, upgrade = converged.releases["first"], converged.releases["upgrade"]
    assert re.fullmatch(r"/opt/ai-gateway/releases/[0-9a-f]{12}/venv", first)
    assert re.fullmatch(r"/opt/ai-gateway/releases/[0-9a-f]{12}/venv", upgrade) and upgrade != first
    assert (converged.root / first.lstrip("/") / "bin/gateway").exists()  # the previous release stays for a rollback
    upgrade_recap = converged.applies[4][0]
    assert upgrade_recap.changed >= 2 and upgrade_recap.failed == 0


def test_a_release_that_fails_the_health_gate_is_rolled_back(converged: Converge) -> None:
    recap, output, _ = converged.applies[5]
    assert recap.failed == 1
    assert "failed its health gate at \"Gate 1" in output
    assert f"rolled back to {converged.releases['upgrade']}" in output
    assert release_link(converged) == converged.releases["upgrade"]
    out = ok(converged.chroot("sh", "-c", "set -a; . /etc/ai-gateway/env; set +a; cd /var/lib && "
                              "/opt/ai-gateway/venv/bin/gateway check --config /etc/ai-gateway/config.yaml"))
    assert "/etc/ai-gateway/config.yaml: OK" in out


def test_nginx_accepts_the_deployed_configuration(converged: Converge) -> None:
    assert "test is successful" in ok(converged.chroot("nginx", "-t"))


def test_systemd_analyze_verify_passes_on_the_rendered_units(converged: Converge) -> None:
    ok(converged.chroot("systemd-analyze", "verify", *UNITS))


def test_gateway_unit_scores_2_or_better_in_systemd_analyze_security(converged: Converge) -> None:
    out = ok(converged.chroot("systemd-analyze", "security", "--offline=yes", UNITS[0]))
    score = float(re.search(r"Overall exposure level for ai-gateway.service: ([0-9.]+)", out).group(1))
    assert score <= 2.0


def test_ollama_unit_scores_3_or_better_and_keeps_gpu_devices_reachable(converged: Converge) -> None:
    out = ok(converged.chroot("systemd-analyze", "security", "--offline=yes", UNITS[1]))
    score = float(re.search(r"Overall exposure level for ollama.service: ([0-9.]+)", out).group(1))
    assert score <= 3.0
    unit = (converged.root / UNITS[1].lstrip("/")).read_text()
    assert "PrivateDevices=yes" not in unit and "DevicePolicy=closed" in unit
    for device in ("char-nvidia-frontend", "char-nvidia-uvm", "char-drm", "char-kfd"):
        assert f"DeviceAllow={device} rw" in unit


def test_backup_timer_and_service_are_installed_and_verify(converged: Converge) -> None:
    ok(converged.chroot("systemd-analyze", "verify", "/etc/systemd/system/ai-gateway-backup.service",
                        "/etc/systemd/system/ai-gateway-backup.timer"))
    service = (converged.root / "etc/systemd/system/ai-gateway-backup.service").read_text()
    assert "ExecStart=/opt/ai-gateway/venv/bin/gateway backup --out /var/backups/ai-gateway --keep 14" in service
    assert ok(converged.chroot("stat", "-c", "%a %U", "/var/backups/ai-gateway")).strip() == "700 root"


def test_installed_gateway_check_passes_against_the_deployed_config_and_env(converged: Converge) -> None:
    out = ok(converged.chroot("sh", "-c", "set -a; . /etc/ai-gateway/env; set +a; cd /var/lib && "
                              "/opt/ai-gateway/venv/bin/gateway check --config /etc/ai-gateway/config.yaml"))
    assert "/etc/ai-gateway/config.yaml: OK" in out


def test_env_file_is_root_owned_0600_and_config_is_readable_by_the_service_only(converged: Converge) -> None:
    stats = ok(converged.chroot("stat", "-c", "%n %a %U %G", "/etc/ai-gateway/env", "/etc/ai-gateway/config.yaml",
                                "/etc/ai-gateway")).splitlines()
    assert stats == ["/etc/ai-gateway/env 600 root root", "/etc/ai-gateway/config.yaml 640 root ai-gateway",
                     "/etc/ai-gateway 750 root ai-gateway"]


def test_env_file_wires_redis_with_the_password_redis_requires(converged: Converge) -> None:
    env = (converged.root / "etc/ai-gateway/env").read_text()
    redis = (converged.root / "etc/redis/redis.conf").read_text()
    password = re.search(r"^requirepass (\S+)$", redis, re.M).group(1)
    assert f"REDIS_URL='redis://:{password}@127.0.0.1:6379/0'" in env
    assert re.search(r"^bind 127\.0\.0\.1 -::1$", redis, re.M)
    assert "DATABASE_URL" not in env  # PostgreSQL is off by default


def test_role_and_gateway_render_produce_identical_files(converged: Converge, tmp_path) -> None:
    unit = (converged.root / UNITS[0].lstrip("/")).read_text()
    workers = re.search(r"--workers (\d+)", unit).group(1)
    subprocess.run([str(GATEWAY_BIN), "render", "systemd", "--out", str(tmp_path), "--workers", workers,
                    "--after", "ollama.service", "--after", "redis-server.service"], check=True, capture_output=True)
    subprocess.run([str(GATEWAY_BIN), "render", "nginx", "--out", str(tmp_path)], check=True, capture_output=True)
    assert (tmp_path / "ai-gateway.service").read_text() == unit
    assert (tmp_path / "ai-gateway.conf").read_text() == (converged.root / "etc/nginx/sites-available/ai-gateway.conf").read_text()


def test_ollama_runs_on_loopback_with_the_context_config_yaml_plans_with(converged: Converge) -> None:
    override = (converged.root / "etc/systemd/system/ollama.service.d/override.conf").read_text()
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    local = {e["model_info"]["max_input_tokens"] for e in config["model_list"]
             if e["model_info"]["gateway_tier"] == "local" and e["model_info"].get("mode") != "embedding"}
    assert local == {8192}
    assert 'Environment="OLLAMA_CONTEXT_LENGTH=8192"' in override
    assert 'Environment="OLLAMA_HOST=127.0.0.1:11434"' in override
    for name in ("NUM_PARALLEL", "MAX_LOADED_MODELS", "KEEP_ALIVE", "MAX_QUEUE"):
        assert f'Environment="OLLAMA_{name}=' in override
    link = os.readlink(converged.root / "usr/local/bin/ollama")
    assert re.fullmatch(r"/opt/ollama/\d+\.\d+\.\d+/bin/ollama", link)


def test_firewall_ruleset_opens_only_ssh_http_https_and_nft_accepts_it(converged: Converge) -> None:
    rules = (converged.root / "etc/nftables.conf").read_text()
    assert re.findall(r"tcp dport \{ ([^}]*) \}", rules) == ["22, 80, 443"]
    assert "policy drop;" in rules
    # Only our own table is replaced, and SSH is rate-limited per source address.
    assert not re.search(r"^\s*flush ruleset", rules, re.M) and re.findall(r"^table inet (\S+)", rules, re.M) == ["ai_gateway"] * 2
    assert len(re.findall(r"tcp dport 22 ct state new update @ssh_meter_v[46] \{ ip6? saddr limit rate over 10/minute", rules)) == 2
    ok(converged.chroot("nft", "-c", "-f", "/etc/nftables.conf"))


def test_gateway_runs_as_a_dedicated_user_without_a_shell(converged: Converge) -> None:
    entry = ok(converged.chroot("getent", "passwd", "ai-gateway")).strip().split(":")
    assert entry[5:] == ["/var/lib/ai-gateway", "/usr/sbin/nologin"]
    assert int(entry[2]) < 1000  # a system user
