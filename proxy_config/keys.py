"""Static client keys (no database): where they come from, their limits, and `gateway keys`.

Keys come from `API_KEYS` (comma-separated, default limits), the `gateway_keys:` list in
config.yaml and the YAML file named by `KEYS_FILE`; an entry for a key that is already
known overrides its name and limits (the keys file wins over config.yaml, both over
API_KEYS). An entry is

    - name: alice-laptop              # shown in logs and in the admin UI after `keys sync`
      key: sk-...                     # or os.environ/ALICE_KEY, or instead: sha256: <hex digest>
      rate_limit_requests: 500        # optional overrides of RATE_LIMIT_REQUESTS / _WINDOW / _TPM
      rate_limit_window: 60
      rate_limit_tpm: 200000
      cloud_budget_usd: 5.00          # optional monthly cloud budget (default KEY_CLOUD_BUDGET_USD)
      local_only: true                # optional: never send this key's requests to the cloud

Keys are only ever compared by their full sha256 (`key_digest`) and logged by its short form
(`key_id`; the ledger's `key_hash` column and `RequestContext.key_hash` hold that short form).
Invalid files raise `SettingsError` naming the file, entry and field.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from proxy_config.settings import Settings, SettingsError, read_config

ENV_REF = "os.environ/"


def key_digest(key: str) -> str:
    """The key's full sha256 hex digest; equal to LiteLLM's virtual-key token hash for the same key."""
    return hashlib.sha256(key.encode()).hexdigest()


def key_id(digest: str) -> str:
    """The short form logs, metrics and the ledger's `key_hash` column show: sha256:1a2b3c4d."""
    return f"sha256:{digest[:8]}"


class KeyEntry(BaseModel, extra="forbid"):
    name: str | None = Field(None, max_length=64, description="Label for logs and the admin UI.")
    key: str | None = Field(None, description="The key, or os.environ/NAME to read it from the environment.")
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$", description="The key's sha256 instead of the key.")
    rate_limit_requests: int | None = Field(None, ge=1)
    rate_limit_window: int | None = Field(None, ge=1)
    rate_limit_tpm: int | None = Field(None, ge=1)
    cloud_budget_usd: float | None = Field(None, ge=0, description="Monthly cloud spend limit in USD (docs/costs.md).")
    local_only: bool | None = Field(None,
                                    description="Never send this key's requests to the cloud (the privacy switch).")

    @model_validator(mode="after")
    def _one_key(self) -> KeyEntry:
        if (self.key is None) == (self.sha256 is None):
            raise ValueError("set exactly one of key or sha256")
        return self


class KeysFile(BaseModel, extra="forbid"):
    keys: list[KeyEntry] = Field(default_factory=list)


@dataclass(frozen=True)
class ClientKey:
    digest: str
    name: str
    requests: int
    window: int
    tpm: int | None
    secret: str | None = field(default=None, repr=False)  # only `keys sync` needs it
    source: str = "API_KEYS"
    budget: float | None = None  # monthly cloud budget in USD; None = unlimited
    local_only: bool = False  # the cloud may not serve this key's requests

    @property
    def id(self) -> str:
        return key_id(self.digest)


@dataclass(frozen=True)
class KeyTable:
    keys: dict[str, ClientKey]  # by sha256
    master_digest: str | None

    def is_master(self, presented: str) -> bool:
        return self.master_digest is not None and hmac.compare_digest(key_digest(presented), self.master_digest)

    def lookup(self, presented: str) -> ClientKey | None:
        return self.keys.get(key_digest(presented))


def _resolve(value: str, where: str, environ: dict[str, str]) -> str:
    if not value.startswith(ENV_REF):
        return value
    name = value[len(ENV_REF):]
    if not environ.get(name):
        raise SettingsError(f"{where}: key reads {value} but {name} is not set in the environment")
    return environ[name]


def _entries(raw: object, where: str) -> list[KeyEntry]:
    try:
        return KeysFile.model_validate(raw if isinstance(raw, dict) else {"keys": raw}).keys
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise SettingsError(f"{where} is invalid: {problems}") from None


def read_keys_file(path: Path) -> list[KeyEntry]:
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise SettingsError(f"KEYS_FILE {path} does not exist; create it or unset KEYS_FILE") from None
    except yaml.YAMLError as exc:
        raise SettingsError(f"KEYS_FILE {path} is not valid YAML: {exc}") from None
    return _entries(raw, f"KEYS_FILE {path}")


def load_keys(settings: Settings, environ: dict[str, str] | None = None) -> KeyTable:
    """All client keys with their effective limits; raises SettingsError on a bad entry."""
    environ = dict(os.environ if environ is None else environ)
    keys: dict[str, ClientKey] = {}
    defaults: dict[str, Any] = dict(requests=settings.rate_limit_requests, window=settings.rate_limit_window,
                                    tpm=settings.rate_limit_tpm, budget=settings.key_cloud_budget_usd)
    for secret in settings.api_keys:
        plain = secret.get_secret_value()
        digest = key_digest(plain)
        keys[digest] = ClientKey(digest, f"key-{digest[:8]}", secret=plain, **defaults)
    sources = [("config.yaml gateway_keys", _entries(read_config(settings.config_path).get("gateway_keys") or [],
                                                    f"{settings.config_path} gateway_keys"))]
    if settings.keys_file is not None:
        sources.append((f"KEYS_FILE {settings.keys_file}", read_keys_file(settings.keys_file)))
    for source, entries in sources:
        for index, entry in enumerate(entries):
            value = None if entry.key is None else _resolve(entry.key, f"{source} entry {index}", environ)
            digest = entry.sha256 or key_digest(value or "")  # KeyEntry has exactly one of key, sha256
            known = keys.get(digest)
            base: dict[str, Any] = (dict(requests=known.requests, window=known.window, tpm=known.tpm,
                                         budget=known.budget) if known else defaults)
            keys[digest] = ClientKey(
                digest=digest,
                name=entry.name or (known.name if known else f"key-{digest[:8]}"),
                requests=entry.rate_limit_requests or base["requests"],
                window=entry.rate_limit_window or base["window"],
                tpm=entry.rate_limit_tpm or base["tpm"],
                secret=value or (known.secret if known else None),
                source=source,
                budget=entry.cloud_budget_usd if entry.cloud_budget_usd is not None else base["budget"],
                local_only=entry.local_only if entry.local_only is not None else bool(known and known.local_only),
            )
    master = settings.master_key.get_secret_value() if settings.master_key else None
    return KeyTable(keys, key_digest(master) if master else None)


def set_budget(path: Path, key: ClientKey, usd: float) -> None:
    """Set `cloud_budget_usd` on the key's entry in the keys file, adding an entry (by sha256) when it has none."""
    raw = yaml.safe_load(path.read_text()) if path.is_file() else None
    raw = raw if isinstance(raw, dict) else {"keys": raw or []}
    entries = raw.setdefault("keys", [])
    for entry in entries:
        if entry.get("sha256") == key.digest or (entry.get("key") and entry.get("name") == key.name):
            entry["cloud_budget_usd"] = usd
            break
    else:
        entries.append({"name": key.name, "sha256": key.digest, "cloud_budget_usd": usd})
    _entries(raw, f"KEYS_FILE {path}")  # never write a file the gateway would refuse
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
