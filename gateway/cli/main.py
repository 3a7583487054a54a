"""The `gateway` command: serve, check, doctor, demo."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from gateway.cli.common import ConfigOpt, JsonOpt, fail, settings_or_exit

app = typer.Typer(help="Unified AI Gateway: an OpenAI-compatible, local-first LiteLLM proxy.", no_args_is_help=True)

# uvicorn's idle keep-alive, above nginx's upstream keepalive_timeout (60 s, proxy_config/templates)
# and common load balancers' 60 s: the proxy in front always closes an idle connection first.
UVICORN_KEEP_ALIVE_S = 75
WeakKeysOpt = Annotated[bool, typer.Option(
    "--allow-weak-keys", help="Accept a short, example or low-entropy LITELLM_MASTER_KEY (local demos only).")]


@app.command()
def serve(
    config: ConfigOpt = None,
    host: Annotated[str | None, typer.Option(help="Bind address (default: HOST or 0.0.0.0).")] = None,
    port: Annotated[int | None, typer.Option(help="Bind port (default: PORT or 8080).")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (default: WORKERS or 1).")] = None,
    limit_max_requests: Annotated[int | None, typer.Option(
        help="Recycle a worker after this many requests (memory growth); jittered by 10%.", min=1)] = None,
    allow_weak_keys: WeakKeysOpt = False,
) -> None:
    """Start the gateway (LiteLLM proxy + routing hooks) on HOST:PORT."""
    from gateway import logs
    from proxy_config.check import check_config

    settings = settings_or_exit(config_path=config, host=host, port=port, workers=workers)
    # Before anything imports prometheus_client: every worker writes its samples here (fresh per start).
    metrics_dir = tempfile.mkdtemp(prefix="gateway-metrics-")
    atexit.register(shutil.rmtree, metrics_dir, True)
    os.environ.update(PROMETHEUS_MULTIPROC_DIR=metrics_dir, JSON_LOGS="True")
    problems = [p for p in check_config(settings, allow_weak_keys) if p.level == "error"]
    if problems:
        raise fail("config is invalid:\n  " + "\n  ".join(p.message for p in problems))
    from proxy_config.keys import load_keys

    client_keys = [k.secret for k in load_keys(settings).keys.values() if k.secret]  # KEYS_FILE keys too
    os.environ.update(logs.secrets_environment(settings, extra=client_keys))
    os.environ.update(settings.litellm_environment())
    if settings.redis_url is not None:  # LiteLLM reads REDIS_* too: keep it from stalling requests on a dead Redis
        os.environ.setdefault("REDIS_SOCKET_TIMEOUT", "0.5")
    if settings.db_mode:  # DB mode: LiteLLM virtual keys + admin UI (issue 3, proxy_config.dbmode)
        from proxy_config import dbmode

        problem = dbmode.migrate()
        if problem is not None:
            raise fail(f"DB mode: {problem}")
        os.environ.update(dbmode.environment(settings, dbmode.render_config(settings)))
    import uvicorn

    uvicorn.run(
        "gateway.app:app",
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        http="httptools",
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=30,
        timeout_keep_alive=UVICORN_KEEP_ALIVE_S,
        limit_max_requests=limit_max_requests,
        limit_max_requests_jitter=(limit_max_requests or 0) // 10,
        log_config=logs.uvicorn_log_config(settings.log_level),
        forwarded_allow_ips=settings.trusted_proxies,  # X-Forwarded-For names the client only from these (gateway.gate)
    )


@app.command()
def check(config: ConfigOpt = None, as_json: JsonOpt = False, allow_weak_keys: WeakKeysOpt = False) -> None:
    """Validate config.yaml and the environment; exit 1 on any error."""
    from proxy_config.check import check_config

    settings = settings_or_exit(config_path=config)
    problems = check_config(settings, allow_weak_keys)
    if as_json:
        typer.echo(json.dumps([p.__dict__ for p in problems], indent=2))
    else:
        for p in problems:
            color = typer.colors.RED if p.level == "error" else typer.colors.YELLOW
            typer.secho(f"{p.level}: {p.message}", err=True, fg=color)
    if any(p.level == "error" for p in problems):
        raise typer.Exit(code=1)
    if not as_json:
        typer.echo(f"{settings.config_path}: OK")


@app.command()
def doctor(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Tell what is reachable (Ollama, models, DeepSeek key) and what to fix."""
    from proxy_config.doctor import diagnose

    settings = settings_or_exit(config_path=config)
    findings = diagnose(settings) + [litellm_shims(settings)]
    if as_json:
        typer.echo(json.dumps(findings, indent=2))
    else:
        for item in findings:
            mark = "ok  " if item["ok"] else "FIX "
            typer.echo(f"{mark}{item['what']}: {item['detail']}")
    if not all(item["ok"] for item in findings):
        raise typer.Exit(code=1)


def litellm_shims(settings) -> dict:
    """The doctor's line on LiteLLM: which shims apply with the installed release (litellm_compat)."""
    from importlib.metadata import version

    from litellm_compat.shims import check_all

    outcomes = check_all(db_mode=settings.db_mode)
    applied = [o.name for o in outcomes if o.applied]
    broken = [f"{o.name} ({o.detail})" for o in outcomes if o.detail.startswith("target changed")]
    other = [f"{o.name} ({o.detail})" for o in outcomes if not o.applied and not o.detail.startswith("target changed")]
    detail = f"LiteLLM {version('litellm')}: shims that apply: {', '.join(applied) or 'none'}"
    detail += f"; off: {', '.join(other)}" if other else ""
    detail += (f"; NOT applying, their LiteLLM target changed (slower, still correct; scripts/try-litellm.sh): "
               f"{', '.join(broken)}") if broken else ""
    return {"what": "litellm shims", "ok": not broken, "detail": detail}


@app.command()
def demo(
    port: Annotated[int, typer.Option(help="Gateway port for the demo.")] = 8080,
    keep: Annotated[bool, typer.Option(help="Keep the demo gateway running until Ctrl-C.")] = False,
) -> None:
    """Run the gateway against built-in Ollama and DeepSeek emulators and show routing decisions."""
    from proxy_config.demo import run_demo

    run_demo(port=port, keep=keep)


# --- subcommands that live in their own modules (one registration line each) ---
from gateway.cli import models  # noqa: E402  (provisioning: issue 5)
from proxy_config import render  # noqa: E402

app.add_typer(render.app, name="render")
app.add_typer(models.app, name="models")
from gateway.cli import keys, report  # noqa: E402  (observability: issue 4; keys: issue 3)

app.command(name="report")(report.report)
app.add_typer(keys.app, name="keys")
from gateway.cli import backup  # noqa: E402  (provisioning: issue 14)

app.command(name="backup")(backup.backup_cmd)
app.command(name="restore")(backup.restore_cmd)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True}, add_help_option=False)
def bench(ctx: typer.Context) -> None:  # (performance: issue 7; options: `gateway bench --help`)
    """Benchmark against direct calls and vanilla LiteLLM (bench/, docs/performance.md)."""
    import subprocess
    import sys

    # The product never imports its benchmark (tests/architecture): bench/ runs in a child process.
    checkout = Path(__file__).resolve().parents[2]  # bench/ ships in the checkout, not in the package
    if not (checkout / "bench" / "__main__.py").is_file():
        raise fail("the benchmark lives in the repository checkout: run `python -m bench` from its root")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(checkout), os.environ.get("PYTHONPATH")]))}
    run = "import sys; from bench.cli import main; main(sys.argv[1:], prog_name='gateway bench')"
    raise typer.Exit(code=subprocess.call([sys.executable, "-c", run, *ctx.args], env=env))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
