"""Structured logs: one JSON object per line, with the request id, secrets redacted.

`gateway serve` passes `uvicorn_log_config(level, secrets)` to uvicorn, so every worker logs
through `JsonLineFormatter` on stdout: uvicorn's own and access logs (not for inference
requests, which get the gateway's richer `request` line instead), the gateway's loggers
(`gateway.*`) and, once `adopt_litellm_loggers()` has run in the worker, LiteLLM's loggers.
A line looks like
    {"ts": "2026-01-01T12:00:00.123Z", "level": "INFO", "logger": "gateway.request",
     "message": "request", "request_id": "3f2a...", "route": "local", ...}
`request_id` is the `x-request-id` of the request being served (from hooks.context), so all
lines of one request can be grepped together. LiteLLM attaches its own handler to its loggers
when it is imported; `AdoptLiteLLM`, a filter uvicorn_log_config puts on those loggers, removes it
before the first record is handled, so every LiteLLM line is written once, in this format.
Redaction replaces the configured keys
(GATEWAY_LOG_SECRETS, set by `gateway serve`) and anything shaped like a key or a bearer
token with `[redacted sha256:<8 hex>]`. A record that cannot be formatted is still written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time

from pydantic import SecretStr

SECRETS_ENV = "GATEWAY_LOG_SECRETS"  # comma-separated exact values to redact, set by `gateway serve`
LITELLM_LOGGERS = ("LiteLLM", "LiteLLM Proxy", "LiteLLM Router")
KEY_SHAPES = re.compile(
    r"(?P<key>\bsk-[A-Za-z0-9_\-]{8,})"
    r"|(?i:(?P<prefix>\bbearer\s+|[?&](?:api[_-]?key|key|token)=|\"?(?:api[_-]?key|authorization)\"?\s*[:=]\s*\"?))"
    r"(?P<value>[A-Za-z0-9_\-.~+/=]{8,})"
)
# Every KEY_SHAPES match contains one of these (lowercased): a cheap test before the regex.
KEY_TRIGGERS = ("sk-", "bearer", "key=", "token=", "apikey", "api_key", "api-key", "authorization")
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message", "asctime", "color_message", "litellm_redacted"}  # LiteLLM stamps a sentinel object on records


def fingerprint(secret: str) -> str:
    return f"[redacted sha256:{hashlib.sha256(secret.encode()).hexdigest()[:8]}]"


class Redactor:
    def __init__(self, secrets: list[str] | None = None) -> None:
        if secrets is None:
            secrets = [s for s in os.environ.get(SECRETS_ENV, "").split(",") if s]
        self.secrets = sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, fingerprint(secret))
        lowered = text.lower()
        if not any(trigger in lowered for trigger in KEY_TRIGGERS):
            return text  # KEY_SHAPES cannot match: skip the regex scan (most lines)
        return KEY_SHAPES.sub(self._shape, text)

    @staticmethod
    def _shape(match: re.Match) -> str:
        if match.group("key"):
            return fingerprint(match.group("key"))
        return match.group("prefix") + fingerprint(match.group("value"))


class RequestIdFilter(logging.Filter):
    """Stamps `request_id` from the request being served (if any and not given explicitly)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            from hooks.context import current

            ctx = current.get()
            if ctx is not None:
                record.request_id = ctx.request_id
        return True


class AdoptLiteLLM(logging.Filter):
    """On LiteLLM's loggers: before a record is handled, drop the handler LiteLLM attached at import
    (its own JSON or plain-text one) and let the record propagate to ours. Without it, every line
    logged while proxy_server is imported was written twice (issue 14)."""

    def filter(self, record: logging.LogRecord) -> bool:
        logger = logging.getLogger(record.name)
        if logger.handlers or not logger.propagate:
            adopt_litellm_loggers()
        return True


class SkipInferenceAccess(logging.Filter):
    """Drops uvicorn's access line for inference requests (/v1/chat/completions, ...): each of
    them gets the gateway's `request` line (hooks.ledger) with route, tokens and cost instead.
    Every other path keeps its access line."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            from hooks.ledger import is_inference

            return not is_inference(args[2].split("?", 1)[0])
        return True


class JsonLineFormatter(logging.Formatter):
    def __init__(self, *args, secrets: list[str] | None = None, **kwargs) -> None:
        super().__init__()
        self.redact = Redactor(secrets)

    def format(self, record: logging.LogRecord) -> str:
        try:
            message = record.getMessage()
        except Exception:  # bad %-args: keep the raw message
            message = str(record.msg)
        line = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": message,
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_") and key not in line:
                line[key] = value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        text = json.dumps(line, ensure_ascii=False, default=str)
        return self.redact(text)


def secrets_environment(settings, extra: list[str] = ()) -> dict[str, str]:
    """GATEWAY_LOG_SECRETS for the workers: every configured key, password and URL credential,
    plus `extra` (client keys from KEYS_FILE or config.yaml)."""
    values = []
    for name in type(settings).model_fields:  # every SecretStr field, so a new secret setting is covered too
        value = getattr(settings, name)
        values += [v for v in (value if isinstance(value, list) else [value]) if isinstance(v, SecretStr)]
    secrets = []
    for value in values:
        secret = value.get_secret_value()
        password = re.search(r"://[^:/@]*:([^@/]+)@", secret)  # the password inside a URL
        secrets.append(password.group(1) if password else secret)
    secrets += extra
    return {SECRETS_ENV: ",".join(s for s in secrets if "," not in s)}


def uvicorn_log_config(level: str) -> dict:
    """logging.dictConfig for `uvicorn.run(log_config=...)`: JSON lines on stdout, LOG_LEVEL."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "filters": ["request_id"], "stream": "ext://sys.stdout"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "gateway.logs.RequestIdFilter"},
                    "skip_inference_access": {"()": "gateway.logs.SkipInferenceAccess"},
                    "adopt_litellm": {"()": "gateway.logs.AdoptLiteLLM"}},
        "formatters": {"json": {"()": "gateway.logs.JsonLineFormatter"}},
        "handlers": {"default": handler},
        "root": {"handlers": ["default"], "level": level},
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
            "uvicorn.access": {"handlers": ["default"], "level": level, "propagate": False,
                               "filters": ["skip_inference_access"]},
            **{name: {"filters": ["adopt_litellm"]} for name in (*LITELLM_LOGGERS, "LiteLLM Proxy.stdout")},
        },
    }


def adopt_litellm_loggers() -> None:
    """Route LiteLLM's loggers through our handler (they come with their own plain-text one)."""
    for name in (*LITELLM_LOGGERS, "LiteLLM Proxy.stdout"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True
