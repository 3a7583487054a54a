"""The gateway's one settings schema: environment (.env) plus the `gateway_settings` block of config.yaml.

The CLI, the hooks and the checker all read the `Settings` object built by `load_settings`.
Environment names are the original design's (HOST, PORT, OLLAMA_URL, ...). Invalid values
raise `SettingsError` with a message naming the variable and how to fix it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

import yaml
from dotenv import dotenv_values
from pydantic import BaseModel, BeforeValidator, Field, SecretStr, ValidationError, field_validator

DEFAULT_CONFIG = "config.yaml"


class SettingsError(ValueError):
    """A setting is missing or invalid; the message says which one and what to do."""


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class RoutingSettings(BaseModel, extra="forbid"):
    """`gateway_settings:` in config.yaml."""

    local_default: str = Field("qwen2.5:7b", description="Local model group used by `auto` and as cloud fallback.")
    cloud_default: str = Field(
        "deepseek-chat", description="Cloud model group for complex requests and local fallback."
    )
    complexity_threshold: int = Field(500, ge=1, description="Requests over this size go to the cloud.")
    complexity_unit: Literal["chars", "tokens"] = Field("chars", description="Unit of complexity_threshold.")
    chars_per_token: float = Field(
        4.0, gt=0, description="Token estimate used for context-window and token thresholds."
    )
    output_reserve_tokens: int = Field(256, ge=0, description="Output room assumed when a request sets no max_tokens.")
    bytes_per_token: float = Field(
        3.5, gt=0, description="Context planning (what fits a local model's num_ctx): UTF-8 bytes per token. 3.5 is "
        "below English prose (~4-4.5 with Llama 3/Qwen tokenizers) and about code's; lower it for data-heavy prompts "
        "(JSON, numbers). A prompt Ollama still cuts is logged and counted (gateway_truncated_prompts_total)."
    )
    cloud_only_kinds: list[Literal["tools", "json_schema", "vision"]] = Field(
        default_factory=list, description="Request kinds that always go to the cloud."
    )
    health_interval_seconds: float = Field(5.0, gt=0, description="How often Ollama's /api/tags is polled.")
    health_timeout_seconds: float = Field(1.0, gt=0, description="Timeout of one Ollama health poll.")
    local_cost_per_1k_tokens: float = Field(
        0.0, ge=0, description="USD per 1,000 tokens (prompt + completion) served locally, for power and hardware; "
        "added to the cost of local requests and so subtracted from the savings (docs/observability.md)."
    )
    # Progress deadlines (proxy_config.deadlines; reasoning for the defaults: docs/reliability.md).
    local_first_token_seconds: float = Field(
        120.0, gt=0, description="Ollama: longest wall-clock wait from sending a chat request to its first token "
        "(model load and prompt evaluation on CPU included); past it the cloud serves the request."
    )
    local_stall_seconds: float = Field(
        60.0, gt=0, description="Ollama: longest gap between two tokens; past it a stream ends with an error "
        "event, a non-streaming request goes to the cloud."
    )
    cloud_first_token_seconds: float = Field(
        60.0, gt=0, description="DeepSeek: longest wall-clock wait for the first token; keep-alives while DeepSeek "
        "is busy do not count. Past it the local tier serves the request."
    )
    cloud_stall_seconds: float = Field(
        30.0, gt=0, description="DeepSeek: longest gap between two tokens (keep-alives are not tokens)."
    )
    response_cache_ttl: int = Field(
        0, ge=0, description="Seconds a response stays in the Redis response cache (env RESPONSE_CACHE_TTL); 0 = off "
        "(docs/costs.md)."
    )
    cache_scope: Literal["key", "shared"] = Field(
        "key", description="key: a key only ever gets its own cached answers; shared: all keys share them."
    )
    cache_max_temperature: float = Field(
        0.0, ge=0, description="Requests with a higher temperature (no temperature counts as 1.0, the OpenAI default) "
        "or with n > 1 are not cached unless the client sends `x-gateway-cache: force`."
    )
    local_slots: int = Field(
        2, ge=1, description="Requests Ollama serves at once (its OLLAMA_NUM_PARALLEL; the Ansible role sets 2); "
        "more wait in Ollama's queue, which the expected local wait counts."
    )
    local_max_wait_seconds: float = Field(
        5.0, ge=0, description="An `auto` request whose expected wait for a local first token is longer goes to the "
        "cloud (reason local-busy); 0 turns spill-over off (README 'Routing')."
    )
    spill_named_local: bool = Field(
        False, description="Spill requests that name a local model too (by default they queue locally: a team may "
        "name a local model for privacy)."
    )
    max_n_local: int = Field(
        1,
        ge=1,
        le=128,
        description="Largest `n` (choices per request) for local models and `auto`; "
        "Ollama answers one choice whatever `n` says, so more would be dropped silently.",
    )
    max_n_cloud: int = Field(4, ge=1, le=128, description="Largest `n` for cloud models: each choice is billed.")
    response_retention_days: float = Field(
        30.0, gt=0, description="Days a Responses API response stays stored for `previous_response_id` and "
        "`GET /v1/responses/{id}` (in the ledger's database; OpenAI keeps them 30 days). Older ones are deleted."
    )


class Settings(BaseModel):
    """Everything the gateway reads from the environment and config.yaml."""

    config_path: Path = Field(Path(DEFAULT_CONFIG), description="LiteLLM proxy config (GATEWAY_CONFIG).")
    host: str = Field("0.0.0.0", description="Bind address (HOST).")
    port: int = Field(8080, ge=1, le=65535, description="Bind port (PORT).")
    workers: int = Field(1, ge=1, le=64, description="Worker processes (WORKERS).")
    debug: bool = Field(False, description="Verbose LiteLLM logging (DEBUG).")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    ollama_url: str = Field("http://localhost:11434", description="Ollama base URL (OLLAMA_URL).")
    deepseek_url: str = Field("https://api.deepseek.com", description="DeepSeek base URL (DEEPSEEK_URL).")
    deepseek_api_key: SecretStr | None = Field(None, description="DeepSeek key (DEEPSEEK_API_KEY).")
    master_key: SecretStr | None = Field(None, description="Admin key (LITELLM_MASTER_KEY or MASTER_KEY).")
    api_keys: Annotated[list[SecretStr], BeforeValidator(_split_csv)] = Field(default_factory=list)
    rate_limit_requests: int = Field(100, ge=1, description="Requests per key per window (RATE_LIMIT_REQUESTS).")
    rate_limit_window: int = Field(60, ge=1, description="Rate-limit window in seconds (RATE_LIMIT_WINDOW).")
    rate_limit_tpm: int | None = Field(None, ge=1, description="Optional tokens per minute per key (RATE_LIMIT_TPM).")
    keys_file: Path | None = Field(None, description="YAML file of client keys and per-key limits (KEYS_FILE).")
    allow_query_api_key: bool = Field(
        False, description="Also accept ?api_key= (ALLOW_QUERY_API_KEY); keys in URLs end up in access logs."
    )
    redis_url: SecretStr | None = Field(
        None, description="Redis for limits shared across workers (REDIS_URL, or REDIS_HOST/REDIS_PORT/REDIS_PASSWORD)."
    )
    database_url: SecretStr | None = Field(
        None, description="PostgreSQL for LiteLLM virtual keys and admin UI (DATABASE_URL)."
    )
    ui_username: str | None = Field(
        None, description="Admin UI login in DB mode (UI_USERNAME; LiteLLM's default: admin)."
    )
    ui_password: SecretStr | None = Field(None, description="Admin UI password in DB mode (UI_PASSWORD).")
    data_dir: Path = Field(Path("data"), description="Where the SQLite request ledger lives (DATA_DIR).")
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="Largest accepted request body (MAX_BODY_BYTES).")
    cors_origins: Annotated[list[str], BeforeValidator(_split_csv)] = Field(
        default_factory=list, description="Allowed CORS origins, comma-separated (CORS_ORIGINS); empty = none."
    )
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    key_cloud_budget_usd: float | None = Field(
        None, ge=0, description="Monthly cloud budget in USD of every client key without its own cloud_budget_usd "
        "(KEY_CLOUD_BUDGET_USD); unset = no budget."
    )
    trusted_proxies: Annotated[list[str], BeforeValidator(_split_csv)] = Field(
        default_factory=lambda: ["127.0.0.1/32", "::1/128"],
        description="Peers whose X-Forwarded-For names the client (TRUSTED_PROXIES, comma-separated addresses or "
        "CIDR ranges; the nginx in front). `none` = every peer is the client itself.")
    public_docs: bool = Field(False, description="Serve /openapi.json, /docs, /redoc, /routes and /public/* without "
                              "the master key (PUBLIC_DOCS).")
    anon_rate_limit_requests: int = Field(
        60,
        ge=1,
        description="Requests without a valid key per source address per "
        "window (ANON_RATE_LIMIT_REQUESTS); health probes and /metrics are not counted.",
    )
    anon_rate_limit_window: int = Field(
        60, ge=1, description="Window of ANON_RATE_LIMIT_REQUESTS in seconds (ANON_RATE_LIMIT_WINDOW)."
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        import ipaddress

        if [v.lower() for v in value] == ["none"]:
            return []
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(
                    f"TRUSTED_PROXIES entry {entry!r} is not an address or CIDR range, e.g. 127.0.0.1/32"
                ) from None
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("ollama_url")
    @classmethod
    def _ollama_url(cls, value: str) -> str:
        return _http_url(value, "OLLAMA_URL").removesuffix("/api").rstrip("/")

    @field_validator("deepseek_url")
    @classmethod
    def _deepseek_url(cls, value: str) -> str:
        # The original .env.example used the full endpoint URL; LiteLLM wants the base.
        return _http_url(value, "DEEPSEEK_URL").removesuffix("/chat/completions").rstrip("/")

    @property
    def db_mode(self) -> bool:
        """DB mode (proxy_config.dbmode): DATABASE_URL is set, so LiteLLM's virtual keys and admin UI are on."""
        return self.database_url is not None

    def litellm_environment(self) -> dict[str, str]:
        """Variables config.yaml reads through `os.environ/NAME`, normalized."""
        env = {
            "OLLAMA_URL": self.ollama_url,
            "DEEPSEEK_URL": self.deepseek_url,
            "GATEWAY_CONFIG": str(self.config_path.resolve()),
            "CONFIG_FILE_PATH": str(self.config_path.resolve()),
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no internet fetch of the cost map at startup
            "LITELLM_LOG": "DEBUG" if self.debug else self.log_level,
        }
        if self.deepseek_api_key is not None:
            env["DEEPSEEK_API_KEY"] = self.deepseek_api_key.get_secret_value()
        if self.master_key is not None:
            env["LITELLM_MASTER_KEY"] = self.master_key.get_secret_value()
        return env


def _http_url(value: str, name: str) -> str:
    if not re.match(r"^https?://[^/\s]+", value):
        raise ValueError(f"{name} must be an http(s) URL such as http://localhost:11434, got {value!r}")
    return value


def parse_threshold(raw: str) -> tuple[int, str | None]:
    """`COMPLEXITY_THRESHOLD` accepts `500`, `500chars`, `2000 tokens`."""
    match = re.fullmatch(r"\s*(\d+)\s*(chars?|characters|tokens?)?\s*", raw)
    if not match:
        raise SettingsError(
            f"COMPLEXITY_THRESHOLD={raw!r} is not valid; use a number with an optional unit, e.g. 500 or 2000tokens"
        )
    unit = match.group(2)
    return int(match.group(1)), None if unit is None else ("tokens" if unit.startswith("token") else "chars")


_ENV_FIELDS = {
    "HOST": "host", "PORT": "port", "WORKERS": "workers", "DEBUG": "debug", "LOG_LEVEL": "log_level",
    "OLLAMA_URL": "ollama_url", "DEEPSEEK_URL": "deepseek_url", "DEEPSEEK_API_KEY": "deepseek_api_key",
    "MASTER_KEY": "master_key", "LITELLM_MASTER_KEY": "master_key", "API_KEYS": "api_keys",
    "RATE_LIMIT_REQUESTS": "rate_limit_requests", "RATE_LIMIT_WINDOW": "rate_limit_window",
    "GATEWAY_CONFIG": "config_path", "RATE_LIMIT_TPM": "rate_limit_tpm", "KEYS_FILE": "keys_file",
    "ALLOW_QUERY_API_KEY": "allow_query_api_key", "REDIS_URL": "redis_url", "DATABASE_URL": "database_url",
    "DATA_DIR": "data_dir", "MAX_BODY_BYTES": "max_body_bytes", "CORS_ORIGINS": "cors_origins",
    "UI_USERNAME": "ui_username", "UI_PASSWORD": "ui_password",
    "KEY_CLOUD_BUDGET_USD": "key_cloud_budget_usd",
    "TRUSTED_PROXIES": "trusted_proxies", "PUBLIC_DOCS": "public_docs",
    "ANON_RATE_LIMIT_REQUESTS": "anon_rate_limit_requests", "ANON_RATE_LIMIT_WINDOW": "anon_rate_limit_window",
}


def read_environment(environ: Mapping[str, str] | None = None, env_file: Path | None = Path(".env")) -> dict[str, str]:
    """The process environment over `.env` (the process wins, as with docker and systemd)."""
    merged: dict[str, str] = {}
    if env_file is not None and env_file.is_file():
        merged.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    merged.update(os.environ if environ is None else environ)
    return merged


def read_config(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise SettingsError(f"config file {path} does not exist; pass --config or set GATEWAY_CONFIG") from None
    except yaml.YAMLError as exc:
        raise SettingsError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise SettingsError(f"{path} must be a YAML mapping with model_list, litellm_settings, ...")
    return data


def load_settings(
    environ: Mapping[str, str] | None = None,
    env_file: Path | None = Path(".env"),
    **overrides: object,
) -> Settings:
    """Build Settings from env + .env + config.yaml; CLI flags come in as `overrides`."""
    env = read_environment(environ, env_file)
    values: dict[str, object] = {}
    for name, field in _ENV_FIELDS.items():
        if env.get(name, "") != "":
            values[field] = env[name]
    if "redis_url" not in values and env.get("REDIS_HOST"):
        auth = f":{env['REDIS_PASSWORD']}@" if env.get("REDIS_PASSWORD") else ""
        values["redis_url"] = f"redis://{auth}{env['REDIS_HOST']}:{env.get('REDIS_PORT', '6379')}/0"
    values.update({k: v for k, v in overrides.items() if v is not None})
    config_path = Path(str(values.get("config_path", DEFAULT_CONFIG)))
    routing = dict(read_config(config_path).get("gateway_settings") or {})
    # The Ansible role sets LOCAL_DEFAULT_MODEL to the model it pulled for the host's RAM.
    for name, key in (("LOCAL_DEFAULT_MODEL", "local_default"), ("CLOUD_DEFAULT_MODEL", "cloud_default")):
        if env.get(name):
            routing[key] = env[name]
    if env.get("COMPLEXITY_THRESHOLD"):
        threshold, unit = parse_threshold(env["COMPLEXITY_THRESHOLD"])
        routing["complexity_threshold"] = threshold
        if unit:
            routing["complexity_unit"] = unit
    if env.get("RESPONSE_CACHE_TTL"):
        routing["response_cache_ttl"] = env["RESPONSE_CACHE_TTL"]
    values["routing"] = routing
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        raise SettingsError(_explain(exc)) from None


_FIELD_ENV = {field: name for name, field in _ENV_FIELDS.items() if name != "MASTER_KEY"}
_SECRET_FIELDS = frozenset({"deepseek_api_key", "master_key", "api_keys", "redis_url", "database_url", "ui_password"})


def _explain(exc: ValidationError) -> str:
    """One line per invalid value, naming the variable; secrets are never echoed."""
    lines = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        if loc and loc[0] == "routing":
            where = "config.yaml gateway_settings." + ".".join(loc[1:])
        else:
            where = _FIELD_ENV.get(loc[0], loc[0]) if loc else "settings"
        custom = (error.get("ctx") or {}).get("error")
        if custom is not None:
            lines.append(str(custom))  # our validators already name the variable
        elif loc and loc[0] in _SECRET_FIELDS:
            lines.append(f"{where}: {error['msg']}")
        else:
            lines.append(f"{where}: {error['msg']} (got {error.get('input')!r})")
    return "; ".join(lines)
