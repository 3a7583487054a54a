"""site.yml converged into Ubuntu roots (22.04 jammy, 24.04 noble) built from Ubuntu's archive.

One apply per release, then the checks whose answer depends on the release's packages: the
gateway's Python (3.11 on jammy from universe, 3.12 on noble), Redis's bind syntax (Redis 6.0 on
jammy), nginx -t, systemd-analyze on the units. The upgrade, rollback, --check --diff and
idempotence paths are release-independent and run in the Debian 12 converge (test_converge.py).
Marker `converge`; needs root and Ubuntu's archive (skipped when it cannot be reached). Opt-in
with GATEWAY_CONVERGE_UBUNTU=1: each release adds a debootstrap (cached) and a full install, about
10 minutes per release on a busy 2-core machine (docs/provisioning.md, "Measured").
"""

from __future__ import annotations

import os
import re
import subprocess
import urllib.request
from collections.abc import Iterator

import pytest

from tests.provisioning.converge import UBUNTU_MIRROR, Converge, missing_prerequisites

pytestmark = pytest.mark.converge
SUITES = {"jammy": "22.04", "noble": "24.04"}


def ubuntu_archive_unreachable(suite: str) -> str | None:
    try:
        urllib.request.urlopen(f"{UBUNTU_MIRROR}/dists/{suite}/Release", timeout=10).close()
    except OSError as exc:
        return f"Ubuntu's archive cannot be reached ({exc})"
    return None


@pytest.fixture(scope="module", params=sorted(SUITES))
def converged(request: pytest.FixtureRequest) -> Iterator[Converge]:
    suite = request.param
    if os.environ.get("GATEWAY_CONVERGE_UBUNTU") != "1":
        pytest.skip("Ubuntu converges are opt-in: set GATEWAY_CONVERGE_UBUNTU=1")
    why = missing_prerequisites() or ubuntu_archive_unreachable(suite)
    if why:
        pytest.skip(why)
    converge = Converge.create(f"ubuntu-{suite}", suite=suite)
    try:
        converge.apply(converge.extra_vars())
        yield converge
    finally:
        converge.teardown(keep=os.environ.get("GATEWAY_CONVERGE_KEEP") == "1")


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


def test_release_is_the_expected_ubuntu(converged: Converge) -> None:
    release = (converged.root / "etc/os-release").read_text()
    assert re.search(r'^VERSION_ID="(22\.04|24\.04)"$', release, re.M)
    assert converged.applies[0][0].failed == 0


def test_gateway_venv_uses_a_python_of_3_11_or_newer_and_gateway_check_passes(converged: Converge) -> None:
    version = ok(converged.chroot("/opt/ai-gateway/venv/bin/python", "-c", "import sys; print(sys.version_info[:2] >= (3, 11))"))
    assert version.strip() == "True"
    out = ok(converged.chroot("sh", "-c", "set -a; . /etc/ai-gateway/env; set +a; cd /var/lib && "
                              "/opt/ai-gateway/venv/bin/gateway check --config /etc/ai-gateway/config.yaml"))
    assert "/etc/ai-gateway/config.yaml: OK" in out


def test_redis_bind_matches_the_installed_redis(converged: Converge) -> None:
    version = re.search(r"v=(\d+)\.(\d+)", ok(converged.chroot("redis-server", "--version"))).groups()
    bind = re.search(r"^bind (.+)$", (converged.root / "etc/redis/redis.conf").read_text(), re.M).group(1)
    assert bind == ("127.0.0.1 -::1" if tuple(map(int, version)) >= (6, 2) else "127.0.0.1")


def test_nginx_and_systemd_accept_the_rendered_files(converged: Converge) -> None:
    assert "test is successful" in ok(converged.chroot("nginx", "-t"))
    ok(converged.chroot("systemd-analyze", "verify", "/etc/systemd/system/ai-gateway.service", "/etc/systemd/system/ollama.service"))
    for unit, limit in (("ai-gateway.service", 2.0), ("ollama.service", 3.0)):
        result = converged.chroot("systemd-analyze", "security", "--offline=yes", f"/etc/systemd/system/{unit}")
        if "unrecognized option '--offline=yes'" in result.stderr:  # jammy's systemd 249 (--offline came in 250)
            result = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(converged.root / "etc/systemd/system" / unit)],
                                    capture_output=True, text=True, timeout=120)
        out = ok(result)
        assert float(re.search(rf"Overall exposure level for {unit}: ([0-9.]+)", out).group(1)) <= limit


def test_nftables_accepts_the_ruleset(converged: Converge) -> None:
    ok(converged.chroot("nft", "-c", "-f", "/etc/nftables.conf"))
