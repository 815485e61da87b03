"""Overlapping per-repository calls, bounded.

Repositories are independent, so their calls can overlap; the `concurrency` setting of each
source bounds how many run at once (and so the load on the registry's rate limits). Results
come back in input order and at most `workers` are held at a time, so memory is bounded by a
few repositories, never by the registry.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Deque, Iterable, Iterator, TypeVar

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
