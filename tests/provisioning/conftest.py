"""Provisioning tests: markers and helpers shared by the Ansible, render and nginx tests."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "converge: applies ansible/site.yml to debootstrapped roots (slow, needs root; Debian 12 by default, Ubuntu with GATEWAY_CONVERGE_UBUNTU=1)")


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A throwaway certificate for localhost / 127.0.0.1."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = directory / "fullchain.pem", directory / "privkey.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key
