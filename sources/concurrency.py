"""Overlapping per-repository calls, bounded.

Repositories are independent, so their calls can overlap; the `concurrency` setting of each
source bounds how many run at once (and so the load on the registry's rate limits). Results
come back in input order and at most `workers` are held at a time, so memory is bounded by a
few repositories, never by the registry.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import logging.handlers
import multiprocessing
import os
import pickle
import queue
import threading
import time
from collections import Counter, deque
from contextlib import contextmanager
from dataclasses import dataclass
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any, Callable, Deque, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, TypeVar

if TYPE_CHECKING:
    from .model import Rows

log = logging.getLogger("registry_etl.concurrency")

T = TypeVar("T")
R = TypeVar("R")


def map_bounded(fn: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """Like `map(fn, items)`, with up to `workers` calls in flight; the first failure is raised
    after the calls already running have finished."""
    workers = max(1, int(workers))
    if isinstance(items, Sequence):
        workers = min(workers, len(items))  # no threads for a task of one repository
    if workers <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="registry-etl") as pool:
        yield from _in_order(pool, fn, items, workers)


def with_inputs(mapper: Callable[[Iterable[T]], Iterator[R]], items: Iterable[T]) -> Iterator[Tuple[T, R]]:
    """`(item, result)` pairs of an order-keeping map (`map_bounded`, `map_in_processes`) over
    `items`, which may be a generator built as the map takes them."""
    taken: Deque[T] = deque()

    def take() -> Iterator[T]:
        for item in items:
            taken.append(item)
            yield item

    for result in mapper(take()):
        yield taken.popleft(), result


def _in_order(pool: Executor, fn: Callable[[T], R], items: Iterable[T], in_flight: int) -> Iterator[R]:
    """`fn` over `items` on `pool`, results in input order, at most `in_flight` submitted and
    not yet consumed; pending calls are cancelled when the caller stops early or one fails."""
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


# the cyclic collector's generation thresholds during a load (Python's default: 700, 10, 10)
COLLECTOR_THRESHOLDS = (50_000, 20, 100)


def relax_collector() -> None:
    """Fewer cyclic collections for the rest of this process: what exists now (imported modules,
    configuration) is frozen out of them, and a young collection runs every 50,000 allocations
    instead of 700. A load allocates millions of dicts and lists of API answers and rows, which
    reference counting frees and none of which is cyclic garbage: Python's default thresholds
    ran a collection every few hundred of them, each also walking the objects still alive
    (about a tenth of a load's CPU; benchmarks/README.md)."""
    gc.freeze()
    gc.set_threshold(*COLLECTOR_THRESHOLDS)


def release_freed_memory() -> None:
    """Give back to the system what this process freed but its allocators kept: cyclic garbage
    collected now, arrow's unused pool memory, glibc's free heap (`malloc_trim`). Called when a
    source has yielded its last rows: the load step (DuckDB and dlt) then grows the process from
    there instead of on top of the extract's leftovers (Yandex at 200,000 images: 701 -> 471 MB
    after the extract, load step peak 991 -> 867 MB in an RSS timeline, 973 / 985 -> 961 / 944 MB
    in the benchmark; benchmarks/README.md, stop 18)."""
    gc.collect()
    try:
        import pyarrow

        pyarrow.default_memory_pool().release_unused()
    except Exception:  # noqa: BLE001 - an optimisation only
        log.debug("arrow's memory pool kept its unused memory", exc_info=True)
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim this way
        pass


@contextmanager
def relaxed_collector() -> Iterator[None]:
    """`relax_collector()` for a block, then the thresholds as they were."""
    before = gc.get_threshold()
    relax_collector()
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


_END = object()


def _hand_over(handoff: "queue.Queue[Any]", entry: Any, stopped: threading.Event) -> bool:
    """Put `entry` on a bounded queue, waiting while it is full; False (not put) once the
    consumer has `stopped`, so a producer thread never blocks on a queue nobody reads."""
    while not stopped.is_set():
        try:
            handoff.put(entry, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def stream_bounded(fn: Callable[[T], Iterable[R]], items: Sequence[T], workers: int, buffered: int = 4) -> Iterator[Tuple[T, Any]]:
    """`(item, output)` for every output of `fn(item)`, up to `workers` items read at once, each
    output handed over as soon as it is made (an item that must say it is done yields a last
    output that says so).

    Unlike `map_bounded`, an item's outputs are not held until the item is done: an item as
    large as a whole registry costs the outputs in the queue (`buffered`), not the registry.
    Outputs of different items interleave. The first failure is raised once the other items
    stopped (after the output they are making); when the caller stops early they stop too.
    """
    workers = max(1, min(int(workers), len(items)))
    handoff: "queue.Queue[Tuple[Any, Any, Optional[BaseException]]]" = queue.Queue(maxsize=max(1, buffered))
    stopped = threading.Event()
    pending = iter(list(items))
    take = threading.Lock()

    def put(entry: Tuple[Any, Any, Optional[BaseException]]) -> bool:
        return _hand_over(handoff, entry, stopped)

    def work() -> None:
        while not stopped.is_set():
            with take:
                item = next(pending, _END)
            if item is _END:
                put((_END, None, None))
                return
            try:
                for output in fn(item):
                    if not put((item, output, None)):
                        return
            except BaseException as exc:  # handed to the caller, raised there
                put((item, None, exc))
                return

    threads = [threading.Thread(target=work, name=f"registry-etl-stream-{n}", daemon=True) for n in range(workers)]
    for thread in threads:
        thread.start()
    running = len(threads)
    try:
        while running:
            item, output, error = handoff.get()
            if error is not None:
                raise error
            if item is _END:
                running -= 1
                continue
            yield item, output
    finally:
        stopped.set()
        for thread in threads:
            thread.join()


def prefetched(pages: Iterator[Any], name: str = "registry-etl-prefetch") -> Iterator[Any]:
    """`pages`, the next one requested (in a thread) while the caller maps this one.

    A page takes the registry a while to render and the caller a while to map; one after the
    other, each waits for the other. At most one page waits in the queue; an error of the
    listing is raised here, where the page would have been; when the caller stops early, the
    thread stops after the call it is in.
    """
    handoff: "queue.Queue[Tuple[Any, Optional[BaseException]]]" = queue.Queue(maxsize=1)
    stopped = threading.Event()

    def put(item: Tuple[Any, Optional[BaseException]]) -> bool:
        return _hand_over(handoff, item, stopped)

    def fetch() -> None:
        try:
            for page in pages:
                if not put((page, None)):
                    return
            put((_END, None))
        except BaseException as exc:  # handed to the caller, raised there
            put((_END, exc))

    thread = threading.Thread(target=fetch, name=name, daemon=True)
    thread.start()
    try:
        while True:
            page, error = handoff.get()
            if page is _END:
                if error is not None:
                    raise error
                return
            yield page
    finally:
        stopped.set()


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


PARENT_CHECK_SECONDS = 1.0


class _Relay(logging.Handler):
    """Hands a worker's log record to the parent's logger of the same name."""

    def handle(self, record: logging.LogRecord) -> bool:  # type: ignore[override]
        logger = logging.getLogger(record.name)
        if logger.isEnabledFor(record.levelno):
            logger.handle(record)
        return True


def _parent_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # killed but not yet reaped: as good as gone
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _exit_with_parent(pid: int) -> None:
    """A worker blocks on its task queue forever if the loading process dies (SIGKILL, OOM):
    nothing closes the queue. Watch that process and leave with it."""
    while True:
        time.sleep(PARENT_CHECK_SECONDS)
        if not _parent_alive(pid):
            os._exit(1)


def _logger_levels() -> Dict[str, Tuple[int, List[logging.Filter]]]:
    """The levels and filters set on the parent's loggers (root included): a worker creates the
    same records (botocore's retry records at DEBUG, which the run counts, for one), and drops
    the ones the parent filters out before they cross to it."""
    loggers = {name: logger for name, logger in logging.root.manager.loggerDict.items()
               if isinstance(logger, logging.Logger) and (logger.level != logging.NOTSET or logger.filters)}
    loggers[""] = logging.getLogger()
    return {name: (logger.level, [f for f in logger.filters if _picklable(f)]) for name, logger in loggers.items()}


def _picklable(value: Any) -> bool:
    try:
        pickle.dumps(value)
    except Exception:  # noqa: BLE001 - a filter that cannot cross stays in the parent
        return False
    return True


def _start_worker(parent: int, environ: Dict[str, str], queue: Any, levels: Dict[str, Tuple[int, List[logging.Filter]]], secrets: Sequence[str], initializer: Optional[Callable[..., None]], initargs: Tuple[Any, ...]) -> None:
    from .errors import register_secret

    threading.Thread(target=_exit_with_parent, args=(parent,), name="parent-watch", daemon=True).start()
    relax_collector()  # a worker lives for one load
    os.environ.clear()
    os.environ.update(environ)
    root = logging.getLogger()
    root.handlers[:] = [logging.handlers.QueueHandler(queue)]
    for name, (level, filters) in levels.items():
        logger = logging.getLogger(name or None)
        logger.setLevel(level)
        for log_filter in filters:
            logger.addFilter(log_filter)
    for secret in secrets:
        register_secret(secret)
    if initializer is not None:
        initializer(*initargs)


def worker_processes(processes: int, most: int = 4) -> int:
    """A source's `processes` setting: 0 means two per core (at most `most`); 1 reads
    everything in the loading process. Two per core: a worker's threads wait for the registry
    part of the time, when another worker can use the core (ECR at 200,000 images and 20 ms:
    61.0 s with 4 workers on 2 cores, 71.3 s with 2; benchmarks/README.md)."""
    if processes and processes > 0:
        return int(processes)
    return max(1, min(2 * (os.cpu_count() or 1), most))


def threads_per_worker(concurrency: int, workers: int) -> int:
    """Threads in each of `workers` worker processes, so that the calls in flight over all of
    them stay `concurrency` (rounded up)."""
    return max(1, -(-max(1, concurrency) // max(1, workers)))


@dataclass(frozen=True)
class TaskPlan:
    """How a source spreads its repositories: `workers` for `read_tasks` (1: this process's
    threads), `size` repositories per task, `threads` per task."""

    workers: int
    size: int
    threads: int


def plan_tasks(repositories: int, workers: int, concurrency: int, min_repositories: int, per_task: int) -> TaskPlan:
    """Worker processes when there are `workers` > 1 and at least `min_repositories` to read
    (below that, starting them costs more than they save): tasks of `per_task` repositories with
    `threads_per_worker` threads each. Otherwise one repository per task, read `concurrency` at
    once in this process."""
    if workers > 1 and repositories >= min_repositories:
        return TaskPlan(workers, per_task, threads_per_worker(concurrency, workers))
    return TaskPlan(1, 1, 1)


# per worker process: one API client per spec for the process's life, and its calls counted
_WORKER_APIS: Dict[Any, Any] = {}
_WORKER_REQUESTS: Counter = Counter()


def call_in_worker(spec: Any, read: Callable[[Any], R]) -> Tuple[R, Counter]:
    """In a worker process: `read(api)` with this process's client for `spec` (built once, by
    `spec.build(counter)`; `spec` must be hashable), and the calls it made per operation, which
    the loading process adds to its own count. A worker runs one task at a time."""
    api = _WORKER_APIS.get(spec)
    if api is None:
        api = _WORKER_APIS[spec] = spec.build(_WORKER_REQUESTS)
    before = Counter(_WORKER_REQUESTS)
    result = read(api)
    requests = Counter(_WORKER_REQUESTS)
    requests.subtract(before)
    return result, +requests


def start_worker_server(preload: Sequence[str]) -> Any:
    """Start this interpreter's forkserver now, importing `preload`, unless it runs already;
    returns the forkserver context. It starts in the background: its imports (dlt's and
    boto3's, ~0.7 s of CPU) then overlap with what the caller does meanwhile (the first
    listing) instead of delaying the first task sent to a worker. The forkserver leaves with
    this process."""
    from multiprocessing import forkserver

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(preload))  # read only when the forkserver starts
    forkserver.ensure_running()
    return context


def map_in_processes(
    fn: Callable[[T], R],
    items: Iterable[T],
    processes: int,
    in_flight: Optional[int] = None,
    initializer: Optional[Callable[..., None]] = None,
    initargs: Tuple[Any, ...] = (),
    preload: Optional[Sequence[str]] = None,
) -> Iterator[R]:
    """Like `map(fn, items)` in `processes` worker processes (forked from a forkserver), in input order, with at
    most `in_flight` items (default 2 per process) submitted and not yet consumed, so memory is
    bounded by a few items. `fn`, the items and the results must be picklable. The first
    failure is raised (it must be picklable too) after the running items have finished.
    `preload`: modules the forkserver imports before forking (default: `fn`'s module), when
    this call starts the forkserver of this interpreter."""
    from .errors import registered_secrets

    processes = max(1, int(processes))
    in_flight = max(processes, int(in_flight or 2 * processes))
    context = start_worker_server(preload if preload is not None else [fn.__module__])
    queue = context.Queue()
    listener = logging.handlers.QueueListener(queue, _Relay())
    listener.start()
    try:
        with ProcessPoolExecutor(
            max_workers=processes,
            mp_context=context,
            initializer=_start_worker,
            initargs=(os.getpid(), dict(os.environ), queue, _logger_levels(), registered_secrets(), initializer, initargs),
        ) as pool:
            yield from _in_order(pool, fn, items, in_flight)
    finally:
        listener.stop()
        queue.close()


def read_tasks(
    read: Callable[[Any, Any], Tuple["Rows", Any]],
    tasks: Iterable[Any],
    local_api: Callable[[Any], Any],
    counter: Counter,
    concurrency: int,
    workers: int,
) -> Iterator[Tuple[Any, "Rows", Any]]:
    """`(task, rows, extra)` for `read(task, api) -> (rows, extra)` over `tasks`, in task order.

    With `workers` <= 1: in this process, up to `concurrency` tasks at once, each with the
    client `local_api(task)`. Otherwise in `workers` worker processes: each builds its own
    client from `task.api` (a hashable spec, see `call_in_worker`), sends its rows back as arrow
    tables and its calls, which are added to `counter`. `read` must be a module-level function
    (it crosses to the workers by name); `tasks` may be a generator, built as they are taken.
    The one way every source reads its per-repository tasks, so a source says what a task is
    and how to read one, not how to spread them."""
    from .model import Rows

    if workers <= 1:
        for task, (rows, extra) in with_inputs(lambda taken: map_bounded(lambda task: read(task, local_api(task)), taken, concurrency), tasks):
            yield task, rows, extra
        return
    in_worker = partial(_read_task_in_worker, read)
    for task, (tables, extra, requests) in with_inputs(
        lambda taken: map_in_processes(in_worker, taken, workers, preload=[read.__module__]), tasks
    ):
        rows = Rows()
        rows.add_arrow_tables(tables)
        counter.update(requests)
        yield task, rows, extra


def _read_task_in_worker(read: Callable[[Any, Any], Tuple["Rows", Any]], task: Any) -> Tuple[List[tuple], Any, Counter]:
    """In a worker process: `read(task, api)` with this process's client, the rows as arrow tables."""
    (rows, extra), requests = call_in_worker(task.api, lambda api: read(task, api))
    return rows.arrow_tables(), extra, requests
