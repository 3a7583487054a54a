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
    assert sorted(services) == ["gateway", "ollama", "ollama-init", "postgres", "redis"]
    assert services["postgres"]["profiles"] == ["postgres"]
    assert all("profiles" not in services[name] for name in ("gateway", "redis", "ollama"))
    assert services["gateway"]["environment"]["OLLAMA_URL"] == "http://ollama:11434"
    assert services["gateway"]["ports"] == ["127.0.0.1:8080:8080"]
    assert "--requirepass" in services["redis"]["command"]
    assert all(":" in services[name]["image"] and not services[name]["image"].endswith(":latest")
               for name in ("redis", "ollama", "postgres"))


def test_compose_ollama_runs_unprivileged_with_a_healthcheck_and_a_gpu_override() -> None:
    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    ollama = services["ollama"]
    assert ollama["user"] == "10001:10001" and ollama["cap_drop"] == ["ALL"]
    assert ollama["environment"]["OLLAMA_MODELS"] == "/models" and ollama["volumes"] == ["ollama-models:/models"]
    assert services["ollama-init"]["entrypoint"] == ["chown", "-R", "10001:10001", "/models"]
    assert ollama["depends_on"]["ollama-init"] == {"condition": "service_completed_successfully"}
    assert ollama["healthcheck"]["test"] == ["CMD", "ollama", "ls"]
    assert services["gateway"]["depends_on"]["ollama"] == {"condition": "service_healthy"}
    gpu = yaml.safe_load((REPO / "docker-compose.gpu.yml").read_text())["services"]
    assert gpu == {"ollama": {"deploy": {"resources": {"reservations": {"devices": [
        {"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]}}}}}
