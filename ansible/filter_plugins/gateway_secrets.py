"""Ansible filter `weak_secret_reason`: why a vault value is not an acceptable secret, or ''.

The rule lives in proxy_config/weak_keys.py (also used by `gateway check`); this file loads it by
path, like the roles load proxy_config/templates/, so the roles must stay inside this repository.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

_SOURCE = Path(__file__).resolve().parents[2] / "proxy_config" / "weak_keys.py"
_spec = importlib.util.spec_from_file_location("_gateway_weak_keys", _SOURCE)
_weak_keys = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_weak_keys)


def weak_secret_reason(value: object, what: str = "the secret") -> str:
    return _weak_keys.weak_reason("" if value is None else str(value), what) or ""


class FilterModule:
    def filters(self) -> dict:
        return {"weak_secret_reason": weak_secret_reason}
