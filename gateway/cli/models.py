"""`gateway models pull|list`: manage the local tier's Ollama models from the gateway's CLI.

`pull` streams Ollama's `POST /api/pull` progress (NDJSON: `pulling manifest`, `pulling <digest>`
with total/completed, `verifying sha256 digest`, `writing manifest`, `success`) into a progress
bar, one bar per layer. `list` shows `GET /api/tags`, marking the models config.yaml routes to.

Fails with exit code 1 and a message on stderr when Ollama is unreachable (naming OLLAMA_URL),
answers with an HTTP error, or reports `{"error": ...}` in the stream (e.g. an unknown model).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import httpx
import typer

from gateway.cli.common import ConfigOpt, JsonOpt, fail
from proxy_config.settings import SettingsError, read_config, read_environment

app = typer.Typer(help="Pull and list the local tier's Ollama models.", no_args_is_help=True)

UrlOpt = Annotated[str | None, typer.Option("--ollama-url", help="Ollama base URL (default: OLLAMA_URL or http://localhost:11434).")]


class OllamaError(RuntimeError):
    """Ollama is unreachable or refused; the message says what to do."""


@dataclass
class PullState:
    """Progress of one pull, built from Ollama's status lines (pure; no I/O)."""

    layers: dict[str, tuple[int, int]] = field(default_factory=dict)  # digest -> (completed, total)
    status: str = ""
    error: str | None = None

    def apply(self, line: dict) -> None:
        if "error" in line:
            self.error = str(line["error"])
            return
        self.status = str(line.get("status", self.status))
        digest, total = line.get("digest"), line.get("total")
        if digest and isinstance(total, int) and total > 0:
            self.layers[digest] = (min(int(line.get("completed") or 0), total), total)

    @property
    def done(self) -> bool:
        return self.status == "success" and self.error is None


def ollama_url(option: str | None) -> str:
    url = option or read_environment().get("OLLAMA_URL") or "http://localhost:11434"
    return url.rstrip("/").removesuffix("/api")


def configured_models(config: Path | None) -> set[str] | None:
    """Ollama tags config.yaml routes to, or None when there is no readable config."""
    path = config or Path(read_environment().get("GATEWAY_CONFIG") or "config.yaml")
    try:
        items = read_config(path).get("model_list") or []
    except SettingsError:
        return None
    prefixes = ("ollama_chat/", "ollama/")
    return {str(i["litellm_params"]["model"]).split("/", 1)[1] for i in items
            if isinstance(i, dict) and str((i.get("litellm_params") or {}).get("model", "")).startswith(prefixes)}


def _unreachable(url: str, exc: Exception) -> OllamaError:
    return OllamaError(f"Ollama is not reachable at {url} ({type(exc).__name__}); start it "
                       "(systemctl start ollama) or set OLLAMA_URL / --ollama-url")


def stream_pull(url: str, name: str):
    """Yield Ollama's pull status lines as dicts."""
    try:
        with httpx.stream("POST", f"{url}/api/pull", json={"model": name, "stream": True},
                          timeout=httpx.Timeout(10.0, read=600.0)) as response:
            if response.status_code != 200:
                response.read()
                raise OllamaError(f"Ollama answered {response.status_code} to pull {name!r}: "
                                  f"{response.text.strip()[:300]}")
            for raw in response.iter_lines():
                if raw.strip():
                    yield json.loads(raw)
    except httpx.TransportError as exc:
        raise _unreachable(url, exc) from None


def _pull_with_bar(lines, name: str) -> PullState:
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    state, bars, last_status = PullState(), {}, ""
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  transient=False) as progress:
        for line in lines:
            state.apply(line)
            if state.status != last_status and not state.status.startswith("pulling sha") and not line.get("digest"):
                progress.console.print(f"{name}: {state.status}")
            last_status = state.status
            for digest, (completed, total) in state.layers.items():
                if digest not in bars:
                    bars[digest] = progress.add_task(f"  {digest.removeprefix('sha256:')[:12]}", total=total)
                progress.update(bars[digest], completed=completed, total=total)
            if state.error:
                break
    return state


@app.command()
def pull(
    name: Annotated[str, typer.Argument(help="Model tag, e.g. qwen2.5:7b.")],
    url: UrlOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Download a model into Ollama, showing progress (Ollama's /api/pull)."""
    base = ollama_url(url)
    try:
        if as_json:
            state = PullState()
            for line in stream_pull(base, name):
                state.apply(line)
                typer.echo(json.dumps(line))
        else:
            state = _pull_with_bar(stream_pull(base, name), name)
    except OllamaError as exc:
        raise fail(str(exc)) from None
    if state.error:
        raise fail(f"Ollama could not pull {name!r}: {state.error}")
    if not state.done:
        raise fail(f"the pull of {name!r} ended before Ollama said success (last status: {state.status!r}); "
                   "run it again")
    known = configured_models(config)
    if not as_json:
        typer.echo(f"pulled {name}")
    if known is not None and name not in known:
        typer.secho(f"warning: {name} is not in config.yaml's model_list; add an entry so the gateway routes to it",
                    fg=typer.colors.YELLOW, err=True)


@app.command("list")
def list_models(url: UrlOpt = None, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Show the models Ollama has, and which of them config.yaml routes to."""
    base = ollama_url(url)
    try:
        response = httpx.get(f"{base}/api/tags", timeout=10.0)
    except httpx.TransportError as exc:
        raise fail(str(_unreachable(base, exc))) from None
    if response.status_code != 200:
        raise fail(f"Ollama answered {response.status_code} to /api/tags: {response.text.strip()[:300]}")
    known = configured_models(config) or set()
    rows = [{"name": m["name"], "size_bytes": m.get("size", 0), "modified_at": m.get("modified_at", ""),
             "in_config": m["name"] in known} for m in response.json().get("models", [])]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo("no models installed; pull one: gateway models pull qwen2.5:7b")
    for row in rows:
        mark = "routed" if row["in_config"] else "not in config.yaml"
        typer.echo(f"{row['name']:<28} {row['size_bytes'] / 1e9:6.1f} GB  {mark}")
    for missing in sorted(known - {r["name"] for r in rows}):
        typer.secho(f"missing: {missing} is in config.yaml but not installed: gateway models pull {missing}",
                    fg=typer.colors.YELLOW, err=True)
