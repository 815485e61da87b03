"""One error type per failure kind, each naming the registry, the call and what to do.

The CLI maps the kinds to exit codes and prints `str(error)`: one paragraph, no traceback.
Every message passes through `redact()`, which blanks every secret a source has registered,
so a credential that slipped into a vendor's error body still never reaches a log.
"""

from __future__ import annotations

import logging
import threading
from typing import Optional, Set

_secrets: Set[str] = set()
_lock = threading.Lock()
REDACTED = "***"


def register_secret(value: Optional[str]) -> None:
    """Remember a credential so `redact()` removes it from any text (short values are ignored)."""
    if value and len(str(value)) >= 6:
        with _lock:
            _secrets.add(str(value))


def registered_secrets() -> list:
    """The secrets registered so far (handed to worker processes, which redact them too)."""
    with _lock:
        return sorted(_secrets)


def redact(text: str) -> str:
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that blanks registered secrets in every record it passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message or record.exc_info:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class RegistryError(Exception):
    """A failure talking to a registry: which one, which call, what happened, what to do."""

    kind = "error"
    default_hint = "Run again with --debug for details."

    def __init__(
        self,
        provider: str,
        call: str,
        detail: str,
        *,
        registry: Optional[str] = None,
        hint: Optional[str] = None,
        status: Optional[int] = None,
    ) -> None:
        self.provider = provider
        self.registry = registry
        self.call = call
        self.detail = redact(str(detail))
        self.hint = hint or self.default_hint
        self.status = status
        super().__init__(self.message)

    def __reduce__(self) -> tuple:
        # keyword-only arguments: rebuilt from its fields when it crosses a process boundary
        return _rebuild_error, (type(self), self.provider, self.call, self.detail, self.registry, self.hint, self.status)

    @property
    def message(self) -> str:
        where = f"{self.provider}"
        if self.registry:
            where += f" registry {self.registry}"
        status = f" (HTTP {self.status})" if self.status else ""
        return redact(f"{where}: {self.call} failed{status}: {self.detail}. {self.hint}")

    def __str__(self) -> str:
        return self.message


class AuthError(RegistryError):
    """The registry refused the credentials (wrong, expired, or without permission)."""

    kind = "auth"
    default_hint = "Check the credentials and their permissions for this registry."


class NotFoundError(RegistryError):
    """A configured registry, repository or namespace does not exist."""

    kind = "not_found"
    default_hint = "Check the configured names: the registry says this does not exist."


class ApiError(RegistryError):
    """The call still failed after retries (5xx, throttling, network)."""

    kind = "api"
    default_hint = "The registry kept failing after retries; run again later."


class BadResponseError(RegistryError):
    """An answer that cannot be used: not JSON, the wrong shape, or a page token that repeats."""

    kind = "bad_response"
    default_hint = "The registry's answer cannot be read; report it with the output of --debug."


class ConfigError(RegistryError):
    """A setting is missing or invalid."""

    kind = "config"
    default_hint = "Fix the setting in .dlt/config.toml, .dlt/secrets.toml or the environment."


def _rebuild_error(cls: type, provider: str, call: str, detail: str, registry: Optional[str], hint: Optional[str], status: Optional[int]) -> "RegistryError":
    return cls(provider, call, detail, registry=registry, hint=hint, status=status)
