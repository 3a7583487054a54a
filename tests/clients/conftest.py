"""Fixtures for the client-library compatibility tests: one `gateway serve` process on the
emulators (tests/conftest.py's `deepseek`; `ollama` here, with nomic-embed-text installed too)
with the master key and two client keys,
a recorder of the route headers every client library's HTTP calls got, and the Ollama state a
test runs under (healthy, or failing with 500s so the cloud serves as a fallback).

Every client library here takes an httpx client, so the route headers are read from the real
responses the library received (`Routes`), whatever the library exposes itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from emulators import ollama as ollama_emulator
from emulators._common import serve_in_thread
from tests.harness import DEEPSEEK_KEY, MASTER_KEY, Emulator, Gateway

CLIENT_KEY = "sk-client-a-7c1e9f2b4d6a8c0e1f3a5b7d9c2e4f6a"
OTHER_CLIENT_KEY = "sk-client-b-0d2f4a6c8e1b3d5f7a9c2e4b6d8f1a3c"
KEYS = {"master": MASTER_KEY, "client": CLIENT_KEY, "other": OTHER_CLIENT_KEY}


@pytest.fixture(scope="session")
def ollama() -> Iterator[Emulator]:
    """Ollama with the default models and the embedding model config.yaml ships (a reset keeps it)."""
    server = serve_in_thread(ollama_emulator.create_app(models=[*ollama_emulator.DEFAULT_MODELS, "nomic-embed-text"]))
    yield Emulator(server)
    server.stop()


@pytest.fixture(scope="session")
def clients_gateway(ollama, deepseek) -> Iterator[Gateway]:
    """The shipped config.yaml, both tiers up, static client keys (docs/keys.md)."""
    gw = Gateway("clients", {"OLLAMA_URL": ollama.url, "DEEPSEEK_URL": deepseek.url, "DEEPSEEK_API_KEY": DEEPSEEK_KEY,
                             "API_KEYS": f"{CLIENT_KEY},{OTHER_CLIENT_KEY}"})
    yield gw.wait_ready()
    gw.stop()


@dataclass
class Routes:
    """(path, x-gateway-route, x-gateway-reason) of every response a client received."""

    seen: list[tuple[str, str | None, str | None]] = field(default_factory=list)

    def record(self, response: httpx.Response) -> None:
        headers = response.headers
        self.seen.append((response.request.url.path, headers.get("x-gateway-route"), headers.get("x-gateway-reason")))

    async def arecord(self, response: httpx.Response) -> None:
        self.record(response)

    def client(self) -> httpx.Client:
        return httpx.Client(event_hooks={"response": [self.record]}, timeout=60)

    def async_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(event_hooks={"response": [self.arecord]}, timeout=60)

    def on(self, suffix: str) -> list[tuple[str | None, str | None]]:
        """The (route, reason) pairs of the responses on paths ending with `suffix`."""
        return [(route, reason) for path, route, reason in self.seen if path.endswith(suffix)]


@pytest.fixture
def routes() -> Routes:
    return Routes()


@dataclass(frozen=True)
class OllamaState:
    failing: bool

    @property
    def expected(self) -> tuple[str, str]:
        """The route a simple `auto` request gets: local, or the cloud after Ollama's 500."""
        return ("cloud", "local-error-fallback") if self.failing else ("local", "simple")

    @property
    def served_by(self) -> str:
        return "deepseek-chat" if self.failing else "qwen2.5:7b"


@pytest.fixture(params=["ollama-up", "ollama-failing"])
def ollama_state(request, ollama, deepseek) -> OllamaState:
    """Run the test twice: Ollama healthy, then every Ollama request answered with a 500."""
    state = OllamaState(failing=request.param == "ollama-failing")
    if state.failing:
        ollama.fault("http_500")
    return state


def fail_ollama(ollama) -> None:
    """Every Ollama request answers 500 until the next test resets the emulator."""
    ollama.fault("http_500")
