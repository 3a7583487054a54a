"""`gateway render systemd|nginx`: the files, their hardening score and nginx's own check."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from proxy_config import render
from gateway.cli.main import app
from tests.provisioning.conftest import self_signed_cert

runner = CliRunner()
VENV = Path(sys.executable).parent.parent


def security_score(unit: Path) -> float:
    result = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(unit)], capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout)
    assert match, result.stdout[-2000:] + result.stderr[-2000:]
    return float(match.group(1))


def test_render_systemd_writes_a_unit_with_check_before_start_and_recycling(tmp_path: Path) -> None:
    result = runner.invoke(app, ["render", "systemd", "--out", str(tmp_path), "--workers", "3", "--port", "8181",
                                 "--after", "ollama.service", "--limit-max-requests", "5000"])
    assert result.exit_code == 0, result.output
    unit = (tmp_path / "ai-gateway.service").read_text()
    assert "ExecStartPre=/opt/ai-gateway/venv/bin/gateway check --config /etc/ai-gateway/config.yaml\n" in unit
    assert ("ExecStart=/opt/ai-gateway/venv/bin/gateway serve --config /etc/ai-gateway/config.yaml --host 127.0.0.1 "
            "--port 8181 --workers 3 --limit-max-requests 5000\n") in unit
    assert "MemoryMax=3584M\n" in unit and "MemoryHigh=3046M\n" in unit
    assert "EnvironmentFile=/etc/ai-gateway/env\n" in unit
    assert "After=network-online.target ollama.service\n" in unit


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_rendered_unit_scores_at_most_2_and_passes_verify(tmp_path: Path) -> None:
    # Point the unit at this venv so `verify` finds the executables it names.
    result = runner.invoke(app, ["render", "systemd", "--out", str(tmp_path), "--venv", str(VENV)])
    assert result.exit_code == 0, result.output
    unit = tmp_path / "ai-gateway.service"
    assert security_score(unit) <= 2.0
    verify = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0, verify.stderr


def nginx_test(site: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = tmp_path / "nginx.conf"
    conf.write_text(f"{user}pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
                    f"http {{\n access_log off;\n include {site};\n}}\n")
    return subprocess.run(["nginx", "-t", "-p", str(tmp_path), "-e", str(tmp_path / "error.log"), "-c", str(conf)],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")
def test_rendered_nginx_site_passes_nginx_t(tmp_path: Path) -> None:
    cert, key = self_signed_cert(tmp_path)
    result = runner.invoke(app, ["render", "nginx", "--out", str(tmp_path), "--listen-address", "127.0.0.1",
                                 "--http-port", "18080", "--https-port", "18443", "--certificate", str(cert),
                                 "--certificate-key", str(key)])
    assert result.exit_code == 0, result.output
    site = (tmp_path / "ai-gateway.conf").read_text()
    assert "proxy_buffering off;" in site and "proxy_read_timeout 600s;" in site
    assert "return 301 https://$host:18443$request_uri;" in site
    assert "listen [::]" not in site  # one address given: no IPv6 wildcard
    checked = nginx_test(tmp_path / "ai-gateway.conf", tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert "test is successful" in checked.stderr


def test_default_nginx_site_listens_on_all_addresses_and_redirects_to_443(tmp_path: Path) -> None:
    site = render.render(render.NGINX_TEMPLATE, render.nginx_variables())
    assert "    listen 443 ssl http2;\n    listen [::]:443 ssl http2;\n" in site
    assert "return 301 https://$host$request_uri;" in site
    assert 'add_header Strict-Transport-Security "max-age=31536000" always;' in site


def test_default_nginx_site_has_the_one_local_gateway_as_its_upstream() -> None:
    site = render.render(render.NGINX_TEMPLATE, render.nginx_variables(upstream_port=8181))
    assert re.findall(r"^\s+server (\S+) ", site, re.MULTILINE) == ["127.0.0.1:8181"]
    assert "proxy_next_upstream_tries 1;" in site


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")
def test_nginx_site_with_several_gateways_balances_by_least_conn_and_never_retries_a_sent_post(tmp_path: Path) -> None:
    cert, key = self_signed_cert(tmp_path)
    result = runner.invoke(app, ["render", "nginx", "--out", str(tmp_path), "--listen-address", "127.0.0.1",
                                 "--http-port", "18080", "--https-port", "18443", "--certificate", str(cert),
                                 "--certificate-key", str(key), "--upstream", "10.0.0.11:8080",
                                 "--upstream", "10.0.0.12:8080", "--upstream-max-fails", "2"])
    assert result.exit_code == 0, result.output
    site = (tmp_path / "ai-gateway.conf").read_text()
    upstream = site[site.index("upstream ai_gateway {"):]
    upstream = upstream[:upstream.index("}")]
    assert re.findall(r"^\s+(server .+|least_conn|keepalive \d+);$", upstream, re.MULTILINE) == [
        "least_conn", "server 10.0.0.11:8080 max_fails=2 fail_timeout=10s",
        "server 10.0.0.12:8080 max_fails=2 fail_timeout=10s", "keepalive 32"]
    # `non_idempotent` absent: a POST that reached a gateway is never sent to another one.
    assert re.findall(r"^\s+proxy_next_upstream (.+);$", site, re.MULTILINE) == ["error timeout"]
    assert "proxy_next_upstream_tries 2;" in site
    checked = nginx_test(tmp_path / "ai-gateway.conf", tmp_path)
    assert checked.returncode == 0, checked.stderr


@pytest.mark.parametrize("bad", ["10.0.0.11", "10.0.0.11:http", ":8080", "10.0.0.11:70000", "fd00::11:8080"])
def test_render_nginx_refuses_an_upstream_that_is_not_host_port(tmp_path: Path, bad: str) -> None:
    result = runner.invoke(app, ["render", "nginx", "--out", str(tmp_path), "--upstream", bad])
    assert result.exit_code == 1
    assert "HOST:PORT" in result.output or "in brackets" in result.output
    assert not (tmp_path / "ai-gateway.conf").exists()


def test_render_fails_with_a_message_when_out_is_not_writable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = runner.invoke(app, ["render", "nginx", "--out", str(blocker / "sub")])
    assert result.exit_code == 1
    assert "choose a writable --out folder" in result.output


@pytest.mark.parametrize(("cores", "workers", "memory"), [(1, 2, 2560), (2, 2, 2560), (12, 3, 3584), (64, 4, 4608)])
def test_workers_and_memory_follow_the_core_count(cores: int, workers: int, memory: int) -> None:
    assert render.workers_for(cores) == workers
    assert render.memory_max_mb(workers) == memory
