"""`gateway models pull|list` against a real Ollama emulator on loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from emulators import ollama as ollama_emulator
from emulators._common import serve_in_thread
from gateway.cli.main import app
from gateway.cli.models import PullState
from tests.harness import REPO, dead_url

runner = CliRunner()
CONFIG = str(REPO / "config.yaml")


@pytest.fixture
def ollama_url() -> Iterator[str]:
    """A private emulator: pulls change its model list."""
    server = serve_in_thread(ollama_emulator.create_app(models=["qwen2.5:7b"]))
    yield server.url
    server.stop()


def installed(url: str) -> list[str]:
    return [m["name"] for m in httpx.get(f"{url}/api/tags").json()["models"]]


def test_pull_streams_progress_and_installs_the_model(ollama_url: str) -> None:
    result = runner.invoke(app, ["models", "pull", "llama3.2:3b", "--ollama-url", ollama_url, "--config", CONFIG])
    assert result.exit_code == 0, result.output
    assert "pulled llama3.2:3b" in result.output
    assert "llama3.2:3b" in installed(ollama_url)


def test_pull_json_prints_every_status_line_until_success(ollama_url: str) -> None:
    result = runner.invoke(app, ["models", "pull", "mistral:7b", "--ollama-url", ollama_url, "--json", "--config", CONFIG])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines[0] == {"status": "pulling manifest"}
    assert lines[-1] == {"status": "success"}
    layer = [line for line in lines if "total" in line]
    assert layer[-1]["completed"] == layer[-1]["total"] == ollama_emulator.CATALOGUE["mistral:7b"].size


def test_pull_warns_when_config_yaml_does_not_route_to_the_model(ollama_url: str) -> None:
    result = runner.invoke(app, ["models", "pull", "phi4:14b", "--ollama-url", ollama_url, "--config", CONFIG])
    assert result.exit_code == 0, result.output
    assert "warning: phi4:14b is not in config.yaml's model_list" in result.output


def test_pull_of_an_unknown_model_fails_with_ollamas_error(ollama_url: str) -> None:
    result = runner.invoke(app, ["models", "pull", "doesnotexist:1b", "--ollama-url", ollama_url])
    assert result.exit_code == 1
    assert "Ollama could not pull 'doesnotexist:1b': pull model manifest: file does not exist" in result.output
    assert "doesnotexist:1b" not in installed(ollama_url)


def test_pull_names_ollama_url_when_ollama_is_down() -> None:
    url = dead_url()
    result = runner.invoke(app, ["models", "pull", "qwen2.5:7b", "--ollama-url", url])
    assert result.exit_code == 1
    assert f"Ollama is not reachable at {url}" in result.output
    assert "OLLAMA_URL" in result.output


def test_list_json_marks_models_config_yaml_routes_to(ollama_url: str) -> None:
    runner.invoke(app, ["models", "pull", "phi3:mini", "--ollama-url", ollama_url, "--json"])
    result = runner.invoke(app, ["models", "list", "--ollama-url", ollama_url, "--json", "--config", CONFIG])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row["in_config"] for row in json.loads(result.stdout)}
    assert rows == {"qwen2.5:7b": True, "phi3:mini": False}


def test_list_reports_models_config_yaml_needs_but_ollama_lacks(ollama_url: str) -> None:
    result = runner.invoke(app, ["models", "list", "--ollama-url", ollama_url, "--config", CONFIG])
    assert result.exit_code == 0, result.output
    assert "missing: llama3.2:3b is in config.yaml but not installed: gateway models pull llama3.2:3b" in result.output


def test_pull_state_tracks_layers_and_errors() -> None:
    state = PullState()
    for line in ({"status": "pulling manifest"}, {"status": "pulling abc", "digest": "sha256:abc", "total": 100, "completed": 40},
                 {"status": "pulling abc", "digest": "sha256:abc", "total": 100, "completed": 100}, {"status": "success"}):
        state.apply(line)
    assert state.layers == {"sha256:abc": (100, 100)}
    assert state.done is True
    state.apply({"error": "disk full"})
    assert (state.error, state.done) == ("disk full", False)
