"""Overlapping per-repository calls, bounded.

Repositories are independent, so their calls can overlap; the `concurrency` setting of each
source bounds how many run at once (and so the load on the registry's rate limits). Results
come back in input order and at most `workers` are held at a time, so memory is bounded by a
few repositories, never by the registry.
"""

from __future__ import annotations

import logging
import logging.handlers
import multiprocessing
import os
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, Callable, Deque, Dict, Iterable, Iterator, Optional, Sequence, Tuple, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def map_bounded(fn: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """Like `map(fn, items)`, with up to `workers` calls in flight; the first failure is raised
    after the calls already running have finished."""
    workers = max(1, int(workers))
    if workers == 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="registry-etl") as pool:
        pending: Deque[Future] = deque()
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) >= workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


# ---- worker processes
# One Python process runs on one core (the GIL): mapping API answers to rows costs about as
# much CPU as the calls themselves, so a large registry is read by a few worker processes,
# each running its own calls (threads inside, for latency) and returning arrow tables, which
# cross the process boundary as buffers. Workers are forked from a "forkserver" (never from
# the parent itself, which holds threads and locks of dlt, botocore and DuckDB), which has
# imported the worker's modules once (`preload`), so a worker starts in milliseconds instead of
# paying dlt's and boto3's imports. A forkserver keeps the environment it started with, so the
# parent's current environment is handed to each worker; workers send their log records to
# the parent, whose handlers (redaction included) write them.


class _Relay(logging.Handler):
    """Hands a worker's log record to the parent's logger of the same name."""

    def handle(self, record: logging.LogRecord) -> bool:  # type: ignore[override]
        logger = logging.getLogger(record.name)
        if logger.isEnabledFor(record.levelno):
            logger.handle(record)
        return True


def _start_worker(environ: Dict[str, str], queue: Any, level: int, secrets: Sequence[str], initializer: Optional[Callable[..., None]], initargs: Tuple[Any, ...]) -> None:
    from .errors import register_secret

    os.environ.clear()
    os.environ.update(environ)
    root = logging.getLogger()
    root.handlers[:] = [logging.handlers.QueueHandler(queue)]
    root.setLevel(level)
    for secret in secrets:
        register_secret(secret)
    if initializer is not None:
        initializer(*initargs)


def map_in_processes(
    fn: Callable[[T], R],
    items: Iterable[T],
    processes: int,
    in_flight: Optional[int] = None,
    initializer: Optional[Callable[..., None]] = None,
    initargs: Tuple[Any, ...] = (),
    preload: Sequence[str] = (),
) -> Iterator[R]:
    """Like `map(fn, items)` in `processes` worker processes (forked from a forkserver), in input order, with at
    most `in_flight` items (default 2 per process) submitted and not yet consumed, so memory is
    bounded by a few items. `fn`, the items and the results must be picklable. The first
    failure is raised (it must be picklable too) after the running items have finished.
    `preload`: modules the forkserver imports before forking (`fn`'s module), when this call
    starts the forkserver of this interpreter."""
    from .errors import registered_secrets

    processes = max(1, int(processes))
    in_flight = max(processes, int(in_flight or 2 * processes))
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(preload))
    queue = context.Queue()
    listener = logging.handlers.QueueListener(queue, _Relay())
    listener.start()
    level = logging.getLogger().getEffectiveLevel()
    try:
        with ProcessPoolExecutor(
            max_workers=processes,
            mp_context=context,
            initializer=_start_worker,
            initargs=(dict(os.environ), queue, level, registered_secrets(), initializer, initargs),
        ) as pool:
            pending: Deque[Future] = deque()
            try:
                for item in items:
                    pending.append(pool.submit(fn, item))
                    if len(pending) >= in_flight:
                        yield pending.popleft().result()
                while pending:
                    yield pending.popleft().result()
            finally:
                for future in pending:
                    future.cancel()
    finally:
        listener.stop()
        queue.close()
