"""Counting retries during a run, whoever does them: botocore (ECR) or dlt's HTTP client (the
REST sources). Neither exposes a counter, so this listens where each one decides to retry:

- botocore logs "Retry needed, retrying request" from its retry handlers (standard and legacy
  modes) just before it sleeps: a logging handler on those loggers counts the records;
- dlt's `requests` client builds a tenacity `Retrying` per session (`_make_retry`): while a run
  is active its sessions get a `before_sleep` hook that counts each retry.

Both are process-wide, so a count covers every source in the run.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, List

log = logging.getLogger("registry_etl.observe")

_BOTOCORE_RETRY_LOGGERS = ("botocore.retries.standard", "botocore.retryhandler")


def _is_retry(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return message.startswith("Retry needed, retrying") or message.startswith("Retry needed, action of")


class RetryRecordsOnly(logging.Filter):
    """On botocore's retry loggers while counting (and not debugging): keeps the retry records
    and drops the "Not retrying request" record botocore logs after every call, which worker
    processes would otherwise send to this process one by one (`sources.concurrency` gives a
    worker's loggers the parent's filters)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return _is_retry(record)


class _CountingHandler(logging.Handler):
    def __init__(self, counter: "RetryCounter") -> None:
        super().__init__(logging.DEBUG)
        self.counter = counter

    def emit(self, record: logging.LogRecord) -> None:
        if _is_retry(record):
            self.counter.add()


class RetryCounter:
    """Context manager: `count` is the number of retries made inside the block."""

    _active: List["RetryCounter"] = []
    _patch_lock = threading.Lock()

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()
        self._saved: List[Any] = []
        self._handler = _CountingHandler(self)
        self._retries_only = RetryRecordsOnly()

    def add(self, *_: Any) -> None:
        with self._lock:
            self.count += 1

    def __enter__(self) -> "RetryCounter":
        debugging = logging.getLogger("registry_etl").isEnabledFor(logging.DEBUG)
        for name in _BOTOCORE_RETRY_LOGGERS:
            logger = logging.getLogger(name)
            self._saved.append((logger, logger.level, logger.propagate))
            logger.setLevel(logging.DEBUG)
            # the records are wanted for counting, not on stderr (unless debugging)
            logger.propagate = debugging
            logger.addHandler(self._handler)
            if not debugging:
                logger.addFilter(self._retries_only)
        with self._patch_lock:
            RetryCounter._active.append(self)
            _patch_dlt_retry()
        return self

    def __exit__(self, *exc: Any) -> None:
        for logger, level, propagate in self._saved:
            logger.removeHandler(self._handler)
            logger.removeFilter(self._retries_only)
            logger.setLevel(level)
            logger.propagate = propagate
        self._saved.clear()
        with self._patch_lock:
            if self in RetryCounter._active:
                RetryCounter._active.remove(self)


def _count_active(retry_state: Any) -> None:
    for counter in list(RetryCounter._active):
        counter.add()


def _patch_dlt_retry() -> None:
    """Give every dlt `requests` session made from now on a retry-counting `before_sleep`."""
    try:
        from dlt.sources.helpers.requests import retry as dlt_retry
    except ImportError:  # pragma: no cover - dlt without its requests helper
        return
    if getattr(dlt_retry._make_retry, "_registry_etl_counting", False):
        return
    original = dlt_retry._make_retry

    def make_retry(*args: Any, **kwargs: Any) -> Any:
        retrying = original(*args, **kwargs)
        previous = retrying.before_sleep

        def before_sleep(retry_state: Any) -> None:
            _count_active(retry_state)
            if previous is not None:
                previous(retry_state)

        retrying.before_sleep = before_sleep
        return retrying

    make_retry._registry_etl_counting = True  # type: ignore[attr-defined]
    dlt_retry._make_retry = make_retry
