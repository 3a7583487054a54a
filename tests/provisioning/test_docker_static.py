"""The Dockerfile and docker-compose.yml, checked statically (there is no Docker engine here)."""

from __future__ import annotations

import re

import yaml

from tests.harness import REPO

DOCKERFILE = (REPO / "Dockerfile").read_text()


def test_dockerfile_installs_the_exact_pins_then_the_project_without_deps() -> None:
    assert "pip install -r requirements.lock" in DOCKERFILE
    assert "pip install --no-deps ." in DOCKERFILE
    assert DOCKERFILE.index("-r requirements.lock") < DOCKERFILE.index("--no-deps .")


def test_dockerfile_pins_the_base_image_and_runs_as_a_non_root_user() -> None:
    image = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE, re.M).group(1)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", image)
    users = re.findall(r"^USER (\S+)$", DOCKERFILE, re.M)
    assert users == ["ai-gateway"]


def test_dockerfile_healthcheck_probes_liveliness() -> None:
    healthcheck = DOCKERFILE[DOCKERFILE.index("HEALTHCHECK"):].split("\n\n")[0]
    assert "/health/liveliness" in healthcheck


def test_compose_has_gateway_redis_ollama_and_an_optional_postgres_profile() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    assert sorted(services) == ["gateway", "ollama", "postgres", "redis"]
    assert services["postgres"]["profiles"] == ["postgres"]
    assert all("profiles" not in services[name] for name in ("gateway", "redis", "ollama"))
    assert services["gateway"]["environment"]["OLLAMA_URL"] == "http://ollama:11434"
    assert services["gateway"]["ports"] == ["127.0.0.1:8080:8080"]
    assert "--requirepass" in services["redis"]["command"]
    assert all(":" in services[name]["image"] and not services[name]["image"].endswith(":latest")
               for name in ("redis", "ollama", "postgres"))
