"""Logging for the CLI: text or JSON lines on stderr, secrets redacted, dlt's records included.

`--log-format json` writes one JSON object per line (`time`, `level`, `logger`, `message`, and
any `extra` fields such as `event` or `summary`), what log shippers and orchestrators ingest.
dlt installs a handler of its own on the `dlt` logger; a forwarding handler takes its place, so
dlt's records get the same format and the same redaction as ours.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from typing import Any

from sources.errors import RedactingFilter, redact

# LogRecord attributes that are not `extra` fields
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record; `extra={...}` fields become keys."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["traceback"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["traceback"] = record.exc_text
        return redact(json.dumps(entry, default=str))


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _ForwardToRoot(logging.Handler):
    """Stands in for dlt's own stderr handler: hands dlt's records to the root handlers."""

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno == logging.WARNING and record.getMessage().startswith("Falling back to `append`"):
            # the filesystem destination says this for every merge table on every run; it is
            # the documented behaviour on files (docs/destinations.md), not news for a scheduler
            return
        for handler in logging.getLogger().handlers:
            if record.levelno >= handler.level:
                handler.handle(record)


def setup_logging(debug: bool = False, log_format: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.WARNING)
    logging.getLogger("registry_etl").setLevel(logging.DEBUG if debug else logging.INFO)
    dlt_logger = logging.getLogger("dlt")
    dlt_logger.handlers[:] = [_ForwardToRoot()]
    dlt_logger.propagate = False
    # dlt logs through its own logger; keep its noise at warnings unless debugging
    dlt_logger.setLevel(logging.DEBUG if debug else logging.WARNING)
    for name in ("botocore", "urllib3", "boto3"):
        logging.getLogger(name).setLevel(logging.WARNING)


def is_json(log_format: Any) -> bool:
    return log_format == "json"
