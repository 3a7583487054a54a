"""`gateway render systemd|nginx`: the gateway's systemd unit and nginx site, without Ansible.

The templates in proxy_config/templates/ are the ones the Ansible roles deploy (the roles point
their template tasks at this folder), so both paths produce the same files. The templates use
only plain Jinja2 (no Ansible filters) and the roles' variable names; this module supplies those
variables with the same defaults and sizing rules as the roles' defaults/main.yml.

Fails with exit code 1 and a message on stderr when the output folder cannot be written or a
variable is invalid; a template referring to an unknown variable raises (StrictUndefined), as
it does under Ansible.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import jinja2
import typer

TEMPLATES = Path(__file__).resolve().parent / "templates"
SYSTEMD_TEMPLATE = "ai-gateway.service.j2"
NGINX_TEMPLATE = "nginx-site.conf.j2"

app = typer.Typer(help="Render the systemd unit and nginx site the Ansible roles deploy.", no_args_is_help=True)

OutOpt = Annotated[Path, typer.Option("--out", "-o",
                                      help="Folder to write the rendered file into (created if missing).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the written path as JSON.")]


def workers_for(cores: int) -> int:
    """Same rule as the gateway role: a quarter of the cores (Ollama needs the rest), 2..4.

    Never 1: with one worker, recycling (--limit-max-requests) restarts the whole server.
    """
    return max(2, min(cores // 4, 4))


def memory_max_mb(workers: int) -> int:
    """Same rule as the gateway role: 1 GiB per worker plus 512 MiB for the supervisor."""
    return workers * 1024 + 512


def render(template: str, variables: dict[str, object]) -> str:
    """Render one template the way Ansible's template module does (trim_blocks, strict)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701 - config files, not HTML
    )
    return env.get_template(template).render(**variables)


def systemd_variables(*, user: str = "ai-gateway", venv: Path = Path("/opt/ai-gateway/venv"),
                      config_file: Path = Path("/etc/ai-gateway/config.yaml"),
                      env_file: Path = Path("/etc/ai-gateway/env"), host: str = "127.0.0.1",
                      port: int = 8080, workers: int | None = None, limit_max_requests: int = 10000,
                      memory_max_mb_: int | None = None, after: tuple[str, ...] = ()) -> dict[str, object]:
    workers = workers or workers_for(os.cpu_count() or 1)
    memory = memory_max_mb_ or memory_max_mb(workers)
    return {
        "gateway_service_name": "ai-gateway",
        "gateway_user": user,
        "gateway_group": user,
        "gateway_venv_dir": str(venv),
        "gateway_config_file": str(config_file),
        "gateway_env_file": str(env_file),
        "gateway_state_directory": "ai-gateway",
        "gateway_host": host,
        "gateway_port": port,
        "gateway_workers": workers,
        "gateway_limit_max_requests": limit_max_requests,
        "gateway_memory_max": f"{memory}M",
        "gateway_memory_high": f"{memory * 85 // 100}M",
        "gateway_after_units": list(after),
    }


def nginx_variables(*, server_name: str = "_", listen_address: str = "", http_port: int = 80,
                    https_port: int = 443, certificate: Path = Path("/etc/ssl/ai-gateway/fullchain.pem"),
                    certificate_key: Path = Path("/etc/ssl/ai-gateway/privkey.pem"),
                    upstream_host: str = "127.0.0.1", upstream_port: int = 8080,
                    upstreams: tuple[str, ...] = (), upstream_max_fails: int = 1,
                    upstream_fail_timeout: str = "10s", upstream_next_timeout: str = "30s",
                    client_max_body_size: str = "20m", read_timeout: str = "600s",
                    hsts_max_age: int = 31536000, ipv6: bool = True, upstream_keepalive_timeout: str = "60s",
                    limit_req_rate: str = "20r/s", limit_req_burst: int = 40,
                    limit_conn: int = 64) -> dict[str, object]:
    return {
        "nginx_server_name": server_name,
        "nginx_listen_address": listen_address,
        "nginx_http_port": http_port,
        "nginx_https_port": https_port,
        "nginx_ipv6": ipv6,
        "nginx_tls_certificate": str(certificate),
        "nginx_tls_certificate_key": str(certificate_key),
        "nginx_upstream_servers": list(upstreams) or [f"{upstream_host}:{upstream_port}"],
        "nginx_upstream_max_fails": upstream_max_fails,
        "nginx_upstream_fail_timeout": upstream_fail_timeout,
        "nginx_upstream_next_timeout": upstream_next_timeout,
        "nginx_upstream_keepalive": 32,
        "nginx_upstream_keepalive_timeout": upstream_keepalive_timeout,
        "nginx_limit_req_rate": limit_req_rate,
        "nginx_limit_req_burst": limit_req_burst,
        "nginx_limit_conn": limit_conn,
        "nginx_client_max_body_size": client_max_body_size,
        "nginx_proxy_read_timeout": read_timeout,
        "nginx_hsts_max_age": hsts_max_age,
        "nginx_acme_webroot": "/var/www/acme",
    }


def parse_upstream(value: str) -> str:
    """Check one `HOST:PORT` (IPv6 as `[::1]:8080`) and return it unchanged; ValueError says what is wrong."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"--upstream {value!r} is not HOST:PORT (e.g. 10.0.0.11:8080 or [fd00::11]:8080)")
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        raise ValueError(f"--upstream {value!r}: write an IPv6 address in brackets, e.g. [fd00::11]:8080")
    return value


def _write(out: Path, name: str, text: str, as_json: bool, next_step: str) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        path = out / name
        path.write_text(text)
    except OSError as exc:
        typer.secho(f"error: cannot write {out / name}: {exc.strerror}; choose a writable --out folder",
                    fg=typer.colors.RED, err=True)
        raise typer.Exit(code=1) from None
    if as_json:
        typer.echo(json.dumps({"path": str(path)}))
    else:
        typer.echo(f"wrote {path}\nnext: {next_step.format(path=path)}")


@app.command()
def systemd(
    out: OutOpt,
    user: Annotated[str, typer.Option(help="System user (and group) the gateway runs as.")] = "ai-gateway",
    venv: Annotated[Path, typer.Option(
        help="Virtualenv holding the installed `gateway` command.")] = Path("/opt/ai-gateway/venv"),
    config_file: Annotated[Path, typer.Option(
        "--config-file", help="Deployed config.yaml.")] = Path("/etc/ai-gateway/config.yaml"),
    env_file: Annotated[Path, typer.Option(
        help="Root-owned 0600 environment file with the keys.")] = Path("/etc/ai-gateway/env"),
    host: Annotated[str, typer.Option(help="Bind address (keep loopback behind nginx).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Bind port.", min=1, max=65535)] = 8080,
    workers: Annotated[int | None, typer.Option(
        help="Worker processes (default: a quarter of the cores, 2..4).", min=1, max=64)] = None,
    limit_max_requests: Annotated[int, typer.Option(
        help="Recycle a worker after this many requests (0 = never).", min=0)] = 10000,
    memory_max_mb_: Annotated[int | None, typer.Option(
        "--memory-max-mb", help="Hard memory limit (default: 1 GiB per worker + 512 MiB).", min=256)] = None,
    after: Annotated[list[str] | None, typer.Option(
        help="Extra units to start after, e.g. ollama.service (repeatable).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Render ai-gateway.service (hardened systemd unit)."""
    variables = systemd_variables(user=user, venv=venv, config_file=config_file, env_file=env_file, host=host,
                                  port=port, workers=workers, limit_max_requests=limit_max_requests,
                                  memory_max_mb_=memory_max_mb_, after=tuple(after or ()))
    _write(out, "ai-gateway.service", render(SYSTEMD_TEMPLATE, variables), as_json,
           "sudo install -m 0644 {path} /etc/systemd/system/ && sudo systemctl daemon-reload "
           "&& sudo systemctl enable --now ai-gateway")


@app.command()
def nginx(
    out: OutOpt,
    server_name: Annotated[str, typer.Option(help="server_name, e.g. gateway.example.com (default: any).")] = "_",
    listen_address: Annotated[str, typer.Option(help="Address to listen on (default: all, IPv4 and IPv6).")] = "",
    http_port: Annotated[int, typer.Option(help="Plain HTTP port (redirects to HTTPS).", min=1, max=65535)] = 80,
    https_port: Annotated[int, typer.Option(help="HTTPS port.", min=1, max=65535)] = 443,
    certificate: Annotated[Path, typer.Option(
        help="TLS certificate (full chain).")] = Path("/etc/ssl/ai-gateway/fullchain.pem"),
    certificate_key: Annotated[Path, typer.Option(help="TLS private key.")] = Path("/etc/ssl/ai-gateway/privkey.pem"),
    upstream_port: Annotated[int, typer.Option(help="Port of `gateway serve` on 127.0.0.1.", min=1, max=65535)] = 8080,
    upstream: Annotated[list[str] | None, typer.Option(
        help="A gateway as HOST:PORT (repeatable, one per gateway host); replaces 127.0.0.1:--upstream-port.")] = None,
    upstream_max_fails: Annotated[int, typer.Option(
        help="Failed attempts within --upstream-fail-timeout that take a gateway out of rotation.", min=0)] = 1,
    upstream_fail_timeout: Annotated[str, typer.Option(
        help="Window for --upstream-max-fails, and how long a failed gateway stays out.")] = "10s",
    upstream_next_timeout: Annotated[str, typer.Option(
        help="Longest time spent passing a not-yet-started request on to the next gateway.")] = "30s",
    client_max_body_size: Annotated[str, typer.Option(help="Largest request body nginx accepts.")] = "20m",
    read_timeout: Annotated[str, typer.Option(help="Longest gap between two reads from the gateway.")] = "600s",
    hsts_max_age: Annotated[int, typer.Option(
        help="Strict-Transport-Security max-age in seconds (0 = no header).", min=0)] = 31536000,
    upstream_keepalive_timeout: Annotated[str, typer.Option(
        help="Idle upstream connections are closed after this; keep it below the gateway's 75 s.")] = "60s",
    limit_req_rate: Annotated[str, typer.Option(
        help="Requests per client address (nginx limit_req rate, e.g. 20r/s).")] = "20r/s",
    limit_req_burst: Annotated[int, typer.Option(help="Burst above that rate, served without delay.", min=0)] = 40,
    limit_conn: Annotated[int, typer.Option(
        help="Requests in flight per client address (streams count for their whole length).", min=1)] = 64,
    as_json: JsonOpt = False,
) -> None:
    """Render ai-gateway.conf (nginx site: TLS, HTTP->HTTPS redirect, streaming proxy to one or more gateways)."""
    try:
        upstreams = tuple(parse_upstream(value) for value in upstream or ())
    except ValueError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=1) from None
    variables = nginx_variables(server_name=server_name, listen_address=listen_address, http_port=http_port,
                                https_port=https_port, certificate=certificate, certificate_key=certificate_key,
                                upstream_port=upstream_port, upstreams=upstreams,
                                upstream_max_fails=upstream_max_fails, upstream_fail_timeout=upstream_fail_timeout,
                                upstream_next_timeout=upstream_next_timeout, client_max_body_size=client_max_body_size,
                                read_timeout=read_timeout, hsts_max_age=hsts_max_age, ipv6=not listen_address,
                                upstream_keepalive_timeout=upstream_keepalive_timeout, limit_req_rate=limit_req_rate,
                                limit_req_burst=limit_req_burst, limit_conn=limit_conn)
    _write(out, "ai-gateway.conf", render(NGINX_TEMPLATE, variables), as_json,
           "sudo install -m 0644 {path} /etc/nginx/sites-enabled/ && sudo nginx -t && sudo systemctl reload nginx")
