"""The `gateway` command: serve, check, doctor, demo."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from proxy_config.settings import Settings, SettingsError, load_settings

app = typer.Typer(help="Unified AI Gateway: an OpenAI-compatible, local-first LiteLLM proxy.", no_args_is_help=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="LiteLLM config file (default: GATEWAY_CONFIG or ./config.yaml).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=1)


def settings_or_exit(**overrides: object) -> Settings:
    try:
        return load_settings(**overrides)
    except SettingsError as exc:
        raise fail(str(exc)) from None


@app.command()
def serve(
    config: ConfigOpt = None,
    host: Annotated[str | None, typer.Option(help="Bind address (default: HOST or 0.0.0.0).")] = None,
    port: Annotated[int | None, typer.Option(help="Bind port (default: PORT or 8080).")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (default: WORKERS or 1).")] = None,
) -> None:
    """Start the gateway (LiteLLM proxy + routing hooks) on HOST:PORT."""
    from proxy_config.check import check_config

    settings = settings_or_exit(config_path=config, host=host, port=port, workers=workers)
    problems = [p for p in check_config(settings) if p.level == "error"]
    if problems:
        raise fail("config is invalid:\n  " + "\n  ".join(p.message for p in problems))
    os.environ.update(settings.litellm_environment())
    import uvicorn

    uvicorn.run(
        "proxy_config.app:app",
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        http="httptools",
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=30,
    )


@app.command()
def check(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Validate config.yaml and the environment; exit 1 on any error."""
    from proxy_config.check import check_config

    settings = settings_or_exit(config_path=config)
    problems = check_config(settings)
    if as_json:
        typer.echo(json.dumps([p.__dict__ for p in problems], indent=2))
    else:
        for p in problems:
            typer.secho(f"{p.level}: {p.message}", err=True, fg=typer.colors.RED if p.level == "error" else typer.colors.YELLOW)
    if any(p.level == "error" for p in problems):
        raise typer.Exit(code=1)
    if not as_json:
        typer.echo(f"{settings.config_path}: OK")


@app.command()
def doctor(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Tell what is reachable (Ollama, models, DeepSeek key) and what to fix."""
    from proxy_config.doctor import diagnose

    settings = settings_or_exit(config_path=config)
    findings = diagnose(settings)
    if as_json:
        typer.echo(json.dumps(findings, indent=2))
    else:
        for item in findings:
            mark = "ok  " if item["ok"] else "FIX "
            typer.echo(f"{mark}{item['what']}: {item['detail']}")
    if not all(item["ok"] for item in findings):
        raise typer.Exit(code=1)


@app.command()
def demo(
    port: Annotated[int, typer.Option(help="Gateway port for the demo.")] = 8080,
    keep: Annotated[bool, typer.Option(help="Keep the demo gateway running until Ctrl-C.")] = False,
) -> None:
    """Run the gateway against built-in Ollama and DeepSeek emulators and show routing decisions."""
    from proxy_config.demo import run_demo

    run_demo(port=port, keep=keep)


# --- subcommands that live in their own modules (one registration line each) ---


def main() -> None:
    app()


if __name__ == "__main__":
    main()
