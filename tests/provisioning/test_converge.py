"""The real converge: ansible/site.yml applied to debootstrapped roots (chroot connection).

One root per release: Debian 12 (bookworm) always; Ubuntu 22.04 (jammy) and 24.04 (noble) built
from Ubuntu's archive when GATEWAY_CONVERGE_UBUNTU=1 (CI's second step, `.ci/run`), skipped with
the reason when that archive cannot be reached. Every release gets the same sequence and checks.

Services are not started by the roles (policy-rc.d exits 101, *_service_manage: false); everything
else is real: apt packages, users, the venv installed by pip from requirements.lock (offline
wheelhouse), config.yaml, the 0600 environment file, units, nginx site, Redis and nftables
configuration. The sequence, in one root: a first apply; a second that must change nothing;
`--check --diff` (clean, no secret printed); `--tags nginx`; the example inventory's secrets
(refused, nothing changed); an upgrade to a new release (its own venv, switched by symlink, and a
new Ollama); a broken release that fails the health gate and is rolled back. Then the live checks:
the rolled-back release started from the root the way its units start it (Redis with the deployed
redis.conf, the gateway unit's ExecStart as its user, an Ollama emulator on loopback), the role's
own gate tasks (/health, one chat completion) run against it, and a `gateway backup` (the backup
unit's ExecStart) and `gateway restore` round trip of the ledger it wrote and the env file.
Needs root; see docs/provisioning.md for how long it takes.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.harness import GATEWAY_BIN, LOG_DIR, REPO, Emulator
from tests.provisioning.converge import Converge
from tests.provisioning.roots import FIXTURES, UBUNTU_MIRROR, missing_prerequisites

pytestmark = pytest.mark.converge
UNITS = ("/etc/systemd/system/ai-gateway.service", "/etc/systemd/system/ollama.service")
SUITES = {"bookworm": "12", "jammy": "22.04", "noble": "24.04"}
EXAMPLE_VAULT = yaml.safe_load((REPO / "ansible/inventory/example/group_vars/ai_gateway/vault.yml").read_text())
SECRETS = yaml.safe_load((FIXTURES / "converge-vars.yml").read_text())


def ubuntu_archive_unreachable(suite: str) -> str | None:
    try:
        urllib.request.urlopen(f"{UBUNTU_MIRROR}/dists/{suite}/Release", timeout=10).close()
    except OSError as exc:
        return f"Ubuntu's archive cannot be reached ({exc}): {suite} is not converged"
    return None


def why_not(suite: str) -> str | None:
    if suite != "bookworm" and os.environ.get("GATEWAY_CONVERGE_UBUNTU") != "1":
        return "Ubuntu converges run in CI's second step (.ci/run), or set GATEWAY_CONVERGE_UBUNTU=1"
    return missing_prerequisites() or (ubuntu_archive_unreachable(suite) if suite != "bookworm" else None)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module", params=list(SUITES))
def converged(request: pytest.FixtureRequest, ollama: Emulator) -> Iterator[Converge]:
    suite = request.param
    why = why_not(suite)
    if why:
        pytest.skip(why)
    started = time.monotonic()
    converge = Converge.create(f"pytest-{suite}", suite=suite)
    try:
        extra = converge.extra_vars()
        converge.apply(extra, step="first")
        converge.releases = {"first": release_link(converge)}
        converge.apply(extra, step="second")
        converge.apply(extra, "--check", "--diff", step="check")
        converge.apply(extra, "--tags", "nginx", step="tags")
        env_before = sha256_of(converge.root / "etc/ai-gateway/env")
        example = {"gateway_master_key": EXAMPLE_VAULT["vault_gateway_master_key"], "redis_requirepass": EXAMPLE_VAULT["vault_redis_requirepass"]}
        converge.apply({**extra, **example}, expect_failure=True, step="example")
        converge.facts["env unchanged by the refused apply"] = env_before == sha256_of(converge.root / "etc/ai-gateway/env")
        # An upgrade: the same code plus one file is a new source revision, hence a new release; and a new Ollama.
        upgrade = {**extra, **converge.ollama_release("0.32.8"),
                   "gateway_source_archive": converge.release_archive("upgrade", {"RELEASE-NOTE": b"upgrade test\n"})}
        converge.apply(upgrade, step="upgrade")
        converge.releases["upgrade"] = release_link(converge)
        # A broken release: installs fine, but its `gateway check` cannot even import; the gate must roll back.
        broken_check = (REPO / "proxy_config/check.py").read_bytes() + b"\nthis release is broken(\n"
        broken = {**upgrade, "gateway_source_archive": converge.release_archive("broken", {"proxy_config/check.py": broken_check})}
        converge.apply(broken, expect_failure=True, step="broken")
        live_checks(converge, ollama)
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        timings = ", ".join(f"{name}: {converge.applies[n][2]:.0f} s" for name, n in converge.steps.items())
        with (LOG_DIR / "converge-timing.txt").open("a") as log:
            log.write(f"{suite}: {timings}; total {time.monotonic() - started:.0f} s\n")
        yield converge
    finally:
        converge.teardown(keep=os.environ.get("GATEWAY_CONVERGE_KEEP") == "1")


def live_checks(converge: Converge, ollama: Emulator) -> None:
    """The rolled-back release serving from the root: the role's gate, then a backup and restore round trip."""
    ollama.reset()
    model = converge.env_file().get("LOCAL_DEFAULT_MODEL", "")
    with converge.serving(ollama.url) as port:
        converge.apply({"gateway_port": str(port), "gateway_health_gate_model": model, "gateway_health_gate_retries": "5"},
                       step="gate", playbook=str(FIXTURES / "gate-playbook.yml"))
        converge.facts["chats seen by Ollama during the gate"] = ollama.chats()
    ledger = converge.root / "var/lib/ai-gateway/ledger.sqlite3"
    converge.facts["ledger rows"] = ledger_rows(ledger)
    env = {**converge.env_file(), "DATA_DIR": "/var/lib/ai-gateway"}
    converge.facts["backup"] = converge.chroot(*converge.unit_command("ai-gateway-backup.service"), env=env)
    env_file = converge.root / "etc/ai-gateway/env"
    original_env = env_file.read_bytes()
    ledger.unlink()
    env_file.write_bytes(original_env + b"LOST='by the restore test'\n")
    stamps = sorted(p.name for p in (converge.root / "var/backups/ai-gateway").iterdir())
    converge.facts["backups"] = stamps
    if not stamps:  # the backup failed: test_backup_and_restore... reports its output
        return
    converge.facts["restore"] = converge.chroot("/opt/ai-gateway/venv/bin/gateway", "restore", f"/var/backups/ai-gateway/{stamps[-1]}",
                                                "--yes", "--config", "/etc/ai-gateway/config.yaml", env=env)
    converge.facts["restored ledger rows"] = ledger_rows(ledger)
    converge.facts["env restored"] = env_file.read_bytes() == original_env


def ledger_rows(path: Path) -> list[tuple]:
    if not path.exists():
        return []
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        return [(table, *row) for table in tables for row in db.execute(f'SELECT * FROM "{table}"')]


def security_score(converge: Converge, unit: str) -> float:
    result = converge.chroot("systemd-analyze", "security", "--offline=yes", f"/etc/systemd/system/{unit}")
    if "unrecognized option '--offline=yes'" in result.stderr:  # jammy's systemd 249 (--offline came in 250)
        result = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(converge.root / "etc/systemd/system" / unit)],
                                capture_output=True, text=True, timeout=120)
    return float(re.search(rf"Overall exposure level for {unit}: ([0-9.]+)", ok(result)).group(1))


def release_link(converge: Converge) -> str:
    return os.readlink(converge.root / "opt/ai-gateway/venv")


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


def test_first_apply_changes_the_host_and_second_apply_changes_nothing(converged: Converge) -> None:
    first, second = converged.applied("first")[0], converged.applied("second")[0]
    assert first.changed > 20
    assert second.changed == 0, converged.applied("second")[1][-6000:]
    assert second.failed == 0


def test_check_diff_on_the_converged_root_is_clean_and_prints_no_secret(converged: Converge) -> None:
    recap, output, _ = converged.applied("check")
    assert "--- before" in output or "changed=0" in output  # --diff was on
    assert (recap.changed, recap.failed) == (0, 0), output[-6000:]
    for name in ("gateway_master_key", "redis_requirepass"):
        for n, (_, apply_output, _) in enumerate(converged.applies, 1):
            assert SECRETS[name] not in apply_output, f"{name} printed by apply {n}"


def test_tags_re_apply_one_role_only(converged: Converge) -> None:
    recap, output, _ = converged.applied("tags")
    # Ansible validates every role's arguments whatever the tags; besides that, only nginx runs, and
    # ollama's `always` fact (the gateway's local default model).
    roles = set(re.findall(r"^TASK \[(\w+) : (?!Validating arguments)", output, re.M))
    assert roles == {"nginx", "ollama"}, roles
    assert "TASK [ollama : Record the models chosen for this host" in output
    assert (recap.changed, recap.failed) == (0, 0)


def test_ollama_upgrade_fetched_sha256sum_txt_and_removed_the_old_version(converged: Converge) -> None:
    output = converged.applied("upgrade")[1]
    assert "TASK [ollama : Read the release's sha256sum.txt" in output
    assert os.readlink(converged.root / "usr/local/bin/ollama") == "/opt/ollama/0.32.8/bin/ollama"
    assert sorted(p.name for p in (converged.root / "opt/ollama").iterdir()) == ["0.32.8"]
    assert sorted(p.name for p in (converged.root / "var/cache/ollama").iterdir()) == ["0.32.8"]


def test_each_release_has_its_own_venv_and_the_upgrade_switched_the_link(converged: Converge) -> None:
    first, upgrade = converged.releases["first"], converged.releases["upgrade"]
    assert re.fullmatch(r"/opt/ai-gateway/releases/[0-9a-f]{12}/venv", first)
    assert re.fullmatch(r"/opt/ai-gateway/releases/[0-9a-f]{12}/venv", upgrade) and upgrade != first
    assert (converged.root / first.lstrip("/") / "bin/gateway").exists()  # the previous release stays for a rollback
    upgrade_recap = converged.applied("upgrade")[0]
    assert upgrade_recap.changed >= 2 and upgrade_recap.failed == 0


def test_a_release_that_fails_the_health_gate_is_rolled_back(converged: Converge) -> None:
    recap, output, _ = converged.applied("broken")
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
    assert security_score(converged, "ai-gateway.service") <= 2.0


def test_ollama_unit_scores_3_or_better_and_keeps_gpu_devices_reachable(converged: Converge) -> None:
    assert security_score(converged, "ollama.service") <= 3.0
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
    version = tuple(map(int, re.search(r"v=(\d+)\.(\d+)", ok(converged.chroot("redis-server", "--version"))).groups()))
    assert re.search(r"^bind (.+)$", redis, re.M).group(1) == ("127.0.0.1 -::1" if version >= (6, 2) else "127.0.0.1")
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


def test_the_root_is_the_release_it_claims_to_be(converged: Converge) -> None:
    release = (converged.root / "etc/os-release").read_text()
    expected = SUITES[converged.suite]
    assert re.search(rf'^VERSION_ID="{re.escape(expected)}"$', release, re.M)


def test_gateway_venv_uses_a_python_of_3_11_or_newer(converged: Converge) -> None:
    out = ok(converged.chroot("/opt/ai-gateway/venv/bin/python", "-c", "import sys; print(sys.version_info[:2] >= (3, 11))"))
    assert out.strip() == "True"


def test_the_example_inventorys_secrets_are_refused_and_change_nothing(converged: Converge) -> None:
    recap, output, _ = converged.applied("example")
    assert (recap.failed, recap.changed) == (1, 0), output[-4000:]
    # The YAML callback doubles the apostrophe and may wrap the line.
    assert re.search(r"redis_requirepass is a value published in this repository'+s\s+examples", output), output[-3000:]
    assert "openssl rand -hex 32" in output
    assert EXAMPLE_VAULT["vault_redis_requirepass"] not in output and EXAMPLE_VAULT["vault_gateway_master_key"] not in output
    assert converged.facts["env unchanged by the refused apply"] is True


def test_the_rolled_back_release_passes_the_roles_health_gate_when_served_from_the_root(converged: Converge) -> None:
    recap, output, _ = converged.applied("gate")
    assert (recap.failed, recap.changed) == (0, 0), output[-4000:]
    assert "TASK [gateway : Gate 2, /health answers 200]" in output
    assert "TASK [gateway : Gate 3, one chat completion on the local model answers 200]" in output
    assert re.search(r"TASK \[gateway : Gate 3[^\n]*\n(ok|changed): ", output), output[-3000:]  # run, not skipped
    assert converged.facts["chats seen by Ollama during the gate"] == 1
    assert SECRETS["gateway_master_key"] not in output


def test_backup_and_restore_round_trip_the_ledger_and_the_env_file_in_the_root(converged: Converge) -> None:
    ok(converged.facts["backup"])
    assert len(converged.facts["backups"]) == 1
    folder = converged.root / "var/backups/ai-gateway" / converged.facts["backups"][0]
    assert sorted(p.name for p in folder.iterdir()) == ["MANIFEST.json", "config.yaml", "env", "ledger.sqlite3"]
    assert len(converged.facts["ledger rows"]) >= 1  # the gate's chat completion was recorded
    ok(converged.facts["restore"])
    assert converged.facts["restored ledger rows"] == converged.facts["ledger rows"]
    assert converged.facts["env restored"] is True
