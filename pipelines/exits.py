"""Exit codes of `registry-etl`, for cron and orchestrators, and how a failure maps to one.

| code | meaning |
| --- | --- |
| 0 | loaded |
| 1 | any other failure (a bug, the destination refused the data, …) |
| 2 | configuration missing or invalid |
| 3 | credentials refused (wrong, expired, or without permission) |
| 4 | a configured registry / repository / namespace does not exist |
| 5 | the registry kept failing after retries, or answered something unreadable |
| 6 | loaded, but some records only in part (see the `load_problems` table) |
| 75 | another load of the same dataset is running, or another process (a notebook) holds the DuckDB file (EX_TEMPFAIL: try again later) |
"""

from __future__ import annotations

from typing import Tuple

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_AUTH = 3
EXIT_NOT_FOUND = 4
EXIT_API = 5
EXIT_PARTIAL = 6
EXIT_LOCKED = 75  # sysexits.h EX_TEMPFAIL
EXIT_INTERRUPTED = 130

EXIT_CODES = {
    "config": EXIT_CONFIG,
    "auth": EXIT_AUTH,
    "not_found": EXIT_NOT_FOUND,
    "api": EXIT_API,
    "bad_response": EXIT_API,
}


def classify(exc: BaseException) -> Tuple[int, str, str]:
    """(exit code, kind, one-paragraph redacted message) of a failed run."""
    from sources.errors import RegistryError, redact

    from .load import root_cause
    from .lock import file_busy

    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED, "interrupted", "interrupted"
    cause = root_cause(exc)
    if isinstance(cause, RegistryError):
        return EXIT_CODES.get(cause.kind, EXIT_FAILED), cause.kind, str(cause)
    busy = file_busy(exc)
    if busy is not None:  # DuckDB refused its file: a notebook or another process holds it
        return EXIT_LOCKED, "file_busy", redact(str(busy))
    message = redact(f"{type(cause).__name__}: {cause}")
    config_errors = ("ConfigField", "ConfigurationValueError", "UnknownDestination", "InvalidDestinationReference")
    if any(name in type(cause).__name__ for name in config_errors) or "ConfigField" in message:
        return EXIT_CONFIG, "config", f"configuration: {message}"
    return EXIT_FAILED, "error", message
