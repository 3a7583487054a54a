"""The Dockerfile and docker-compose.yml, checked statically (there is no Docker engine here).

The compose files are validated against the official Compose Specification JSON schema, vendored
in fixtures/compose-spec.json (source and licence: fixtures/compose-spec.SOURCE.md).
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.harness import REPO

DOCKERFILE = (REPO / "Dockerfile").read_text()
COMPOSE_SCHEMA = json.loads((Path(__file__).resolve().parent / "fixtures/compose-spec.json").read_text())
DIGEST = r"@sha256:[0-9a-f]{64}"


def test_dockerfile_installs_the_exact_pins_then_the_project_without_deps() -> None:
    assert "pip install -r requirements.lock" in DOCKERFILE
    assert "pip install --no-deps ." in DOCKERFILE
    assert DOCKERFILE.index("-r requirements.lock") < DOCKERFILE.index("--no-deps .")


def test_dockerfile_pins_the_base_image_and_runs_as_a_non_root_user() -> None:
    image = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE, re.M).group(1)
    assert re.fullmatch(rf"python:3\.11\.\d+-slim-bookworm{DIGEST}", image)
    assert re.findall(r"^FROM (\S+)", DOCKERFILE, re.M) == ["${PYTHON_IMAGE}", "${PYTHON_IMAGE}"]
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


def compose_errors(document: dict) -> list[str]:
    validator = jsonschema.Draft7Validator(COMPOSE_SCHEMA)
    return [f"{'/'.join(map(str, error.absolute_path))}: {error.message}" for error in validator.iter_errors(document)]


@pytest.mark.parametrize("name", ["docker-compose.yml", "docker-compose.gpu.yml"])
def test_compose_file_is_valid_against_the_compose_spec_schema(name: str) -> None:
    assert compose_errors(yaml.safe_load((REPO / name).read_text())) == []


def test_the_schema_check_catches_a_broken_compose_file() -> None:
    broken = copy.deepcopy(yaml.safe_load((REPO / "docker-compose.yml").read_text()))
    broken["services"]["ollama"]["healthcheck"]["interval"] = ["15s"]     # must be a string
    broken["services"]["gateway"]["restart_policy"] = "always"            # no such key
    errors = compose_errors(broken)
    assert len(errors) == 2, errors
    assert any(e.startswith("services/ollama/healthcheck/interval:") for e in errors)
    assert any("restart_policy" in e for e in errors)


def test_compose_images_are_pinned_by_digest_except_ollama() -> None:
    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    images = {name: service["image"] for name, service in services.items() if name != "gateway"}
    assert re.fullmatch(rf"redis:7\.2\.\d+-alpine{DIGEST}", images["redis"])
    assert re.fullmatch(rf"postgres:16\.\d+-alpine{DIGEST}", images["postgres"])
    # No published digest of ollama/ollama:0.32.7 could be found (docs/provisioning.md, "Docker"):
    # tag-pinned, and the same release as the Ansible role.
    assert images["ollama"] == images["ollama-init"] == "ollama/ollama:0.32.7"
