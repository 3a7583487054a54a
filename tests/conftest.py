"""Shared fixtures: emulators as real loopback HTTP servers, gateways as real processes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from emulators import deepseek as deepseek_emulator
from emulators import ollama as ollama_emulator
from emulators._common import serve_in_thread
from tests.harness import DEEPSEEK_KEY, Emulator, Gateway


@pytest.fixture(scope="session")
def ollama() -> Iterator[Emulator]:
    server = serve_in_thread(ollama_emulator.create_app())
    yield Emulator(server)
    server.stop()


@pytest.fixture(scope="session")
def deepseek() -> Iterator[Emulator]:
    server = serve_in_thread(deepseek_emulator.create_app(api_key=DEEPSEEK_KEY))
    yield Emulator(server)
    server.stop()


@pytest.fixture(autouse=True)
def _clean_emulators(request) -> None:
    """Every test starts with healthy emulators and zeroed counters."""
    for name in ("ollama", "deepseek"):
        if name in request.fixturenames:
            request.getfixturevalue(name).reset()


@pytest.fixture(scope="session")
def gateway(ollama, deepseek) -> Iterator[Gateway]:
    """The shipped config with both tiers up."""
    gw = Gateway("main", {"OLLAMA_URL": ollama.url, "DEEPSEEK_URL": deepseek.url, "DEEPSEEK_API_KEY": DEEPSEEK_KEY})
    yield gw.wait_ready()
    gw.stop()
