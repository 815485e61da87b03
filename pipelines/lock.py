"""One load at a time per dataset: an `fcntl` lock file keyed by destination and dataset.

Two overlapping runs on one dataset would race on dlt's state and on the scd2 merge of `tags`,
so the second one stops at once (exit code 75) with a message naming the run that holds the
lock. The kernel drops the lock when its process ends, however it ends: a killed run never
leaves a stale lock behind. The file itself stays (deleting it would let two runs lock two
different files of the same name).

Where the lock file lives:
- DuckDB: next to the database file (`registry_etl.duckdb.lock`), so every process that loads
  that file sees the same lock, whatever its pipelines dir;
- any other destination: in the pipelines dir (`~/.dlt/pipelines` by default), named after the
  destination, the dataset and a fingerprint of the destination's location (host, bucket).
  That covers runs on one machine; runs from several machines need the scheduler's own
  concurrency limit (see docs/operations.md).

DuckDB has a lock of its own: while another process has the file open (a notebook, the duckdb
CLI, `registry-etl report`; read-only is enough) no process can open it for writing. A load
checks that at its start (`check_file_free`) and, when DuckDB refuses it later in the run, the
error is recognised (`file_busy`): either way the run ends with exit code 75 and a paragraph
naming the file and the holder's PID (`FileBusy`), never a traceback. `--wait SECONDS` waits
(bounded, polling) for our own lock and for such a holder to go away.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import socket
import sys
import time
from typing import Any, Dict, Optional

import dlt
# imported with this module, not inside `check_file_free`: its import (~0.5 s) must not eat the
# `--wait` budget that starts before the load lock is taken
import duckdb

log = logging.getLogger("registry_etl.lock")

# how often a waiting run looks again (the lock and the DuckDB file)
POLL_SECONDS = 0.2
# DuckDB's refusal: `IO Error: Could not set lock on file "<path>": Conflicting lock is held in
# <program> (PID <pid>) [by user <name>]. …`
_DUCKDB_LOCK = re.compile(r'Could not set lock on file "(?P<path>[^"]+)"')
_DUCKDB_HOLDER = re.compile(r"held in (?P<program>.+?) \(PID (?P<pid>\d+)\)")


class LockBusy(Exception):
    """Another load holds the lock of this dataset."""

    def __init__(self, path: str, holder: Dict[str, Any]) -> None:
        self.path = path
        self.holder = holder
        who = ", ".join(f"{k} {v}" for k, v in holder.items() if k in ("pid", "host", "since")) or "unknown process"
        super().__init__(
            f"another load of this dataset is running ({who}); this run stops without loading "
            f"(run it again later, or pass --wait SECONDS to wait for that one). Lock file: {path}"
        )


# what a run refused by the DuckDB file lock had done, by the dlt step that was refused
_OUTCOME_BY_STEP = {
    None: "This run stopped before reading the registries; nothing was loaded and nothing is lost.",
    "sync": "This run stopped before reading the registries; nothing was loaded and nothing is lost.",
    "extract": "This run stopped before loading; nothing was loaded and nothing is lost.",
    "normalize": "What this run read from the registries is kept in the pipeline folder and the next "
                 "run loads it; nothing is lost.",
    "load": "What this run read from the registries is kept in the pipeline folder and the next "
            "run loads it; nothing is lost.",
}
_OUTCOME_OTHER = "What did not land in this run is read or loaded again by the next run; nothing is lost."


class FileBusy(Exception):
    """Another process has the DuckDB file open, so DuckDB refuses to open it for writing.

    Attributes:
        path: The DuckDB file.
        pid: The holder's process id, when DuckDB's message gives it.
        program: The holder's executable, when DuckDB's message gives it.
        step: The dlt step that was refused (`sync`, `load`, …), None at the run's start check.
    """

    def __init__(self, path: str, pid: Optional[int] = None, program: Optional[str] = None,
                 step: Optional[str] = None) -> None:
        self.path, self.pid, self.program, self.step = path, pid, program, step
        who = f"PID {pid}, {program}" if pid and program else (f"PID {pid}" if pid else "its PID unknown")
        outcome = _OUTCOME_BY_STEP.get(step, _OUTCOME_OTHER)
        super().__init__(
            f"the DuckDB file {path} is open in another process ({who}): DuckDB lets no process "
            f"write to a file that another one holds open, even read-only (a notebook, the duckdb CLI, "
            f"a dashboard). {outcome} Close that connection (in a notebook `con.close()`, or restart "
            f"its kernel), or let readers query a copy of the file or use `registry-etl report`, which "
            f"holds it only for a moment; then run the load again (or pass --wait SECONDS to wait for it)."
        )


def file_busy(exc: BaseException) -> Optional[FileBusy]:
    """The `FileBusy` behind a failed run when DuckDB refused to open its file because another
    process holds it (anywhere in the exception chain), else None."""
    if isinstance(exc, FileBusy):
        return exc
    step: Optional[str] = None
    seen, todo = set(), [exc]
    while todo:
        current = todo.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if step is None and isinstance(getattr(current, "step", None), str):
            step = current.step  # dlt's PipelineStepFailed
        match = _DUCKDB_LOCK.search(str(current))
        if match:
            holder = _DUCKDB_HOLDER.search(str(current))
            return FileBusy(
                match.group("path"),
                int(holder.group("pid")) if holder else None,
                holder.group("program") if holder else None,
                step,
            )
        todo.extend([current.__cause__, current.__context__, getattr(current, "exception", None),
                     getattr(current, "client_exception", None)])
    return None


class LoadLock:
    """Exclusive, non-blocking lock on one file; use as a context manager."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._handle: Optional[Any] = None

    def acquire(self, wait: float = 0.0) -> "LoadLock":
        """Take the lock; when another run holds it, wait up to `wait` seconds for it (polling),
        then raise `LockBusy`."""
        deadline = time.monotonic() + wait
        announced = False
        while True:
            try:
                return self._try_acquire()
            except LockBusy as busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise
                if not announced:
                    log.info("another load of this dataset is running (pid %s, since %s); waiting up to %g s for it to end",
                             busy.holder.get("pid"), busy.holder.get("since"), wait,
                             extra={"event": "waiting", "waiting_for": "load_lock", "lock_file": self.path})
                    announced = True
                time.sleep(min(POLL_SECONDS, left))

    def _try_acquire(self) -> "LoadLock":
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                handle.close()
                raise
            holder = _read_holder(handle)
            handle.close()
            raise LockBusy(self.path, holder) from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "command": " ".join(sys.argv[:6]),
        }))
        handle.flush()
        self._handle = handle
        log.debug("holding the load lock %s", self.path)
        return self

    def release(self) -> None:
        if self._handle is not None:
            try:
                self._handle.truncate(0)
                fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
            finally:
                self._handle.close()
                self._handle = None

    def __enter__(self) -> "LoadLock":
        return self.acquire() if self._handle is None else self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _read_holder(handle: Any, patience: float = 0.5) -> Dict[str, Any]:
    """Who holds the lock, from its file. A holder that has just taken the lock may not have
    written itself yet (flock, then the write): read again for up to `patience` seconds."""
    deadline = time.monotonic() + patience
    while True:
        handle.seek(0)
        holder = _parse_holder(handle.read())
        if holder or time.monotonic() >= deadline:
            return holder
        time.sleep(0.01)


def _parse_holder(text: str) -> Dict[str, Any]:
    try:
        value = json.loads(text)
        return value if isinstance(value, dict) else {}
    except ValueError:
        return {}


def current_holder(path: str) -> Optional[Dict[str, Any]]:
    """Who holds the lock now, read from the lock file without taking the lock (so a `status`
    never makes a starting load fail): the holder's info, or None when no live process has it."""
    try:
        with open(path) as handle:
            holder = _parse_holder(handle.read())
    except OSError:
        return None
    pid = holder.get("pid")
    if not isinstance(pid, int):
        return None
    if holder.get("host") not in (None, socket.gethostname()):
        return holder  # another machine's process: cannot check it from here
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None  # it died without releasing: the kernel freed the lock already
    except PermissionError:
        pass  # alive, another user's
    return holder


def lock_path(pipeline: dlt.Pipeline) -> str:
    """The lock file for the pipeline's destination and dataset."""
    destination = pipeline.destination
    kind = destination.destination_name if destination is not None else "none"
    if destination is not None and destination.destination_type.endswith(".duckdb"):
        database = _duckdb_path(pipeline)
        if database:
            return database + ".lock"
    fingerprint = ""
    try:
        fingerprint = pipeline.destination_client().config.fingerprint() or ""
    except Exception as exc:  # credentials not resolvable yet: lock on name + dataset only
        log.debug("no destination fingerprint: %s", exc)
    digest = hashlib.sha256(f"{kind}|{fingerprint}|{pipeline.dataset_name}".encode()).hexdigest()[:16]
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{kind}.{pipeline.dataset_name}")
    return os.path.join(pipeline.pipelines_dir, f"registry_etl.{name}.{digest}.lock")


def _duckdb_path(pipeline: dlt.Pipeline) -> Optional[str]:
    try:
        credentials = pipeline.destination_client().config.credentials
        database = getattr(credentials, "database", None)
    except Exception as exc:
        log.debug("no DuckDB path: %s", exc)
        return None
    if not database or database == ":memory:":
        return None
    return os.path.abspath(database)


def acquire(pipeline: dlt.Pipeline, wait: float = 0.0) -> LoadLock:
    """Take the load lock of the pipeline's dataset, waiting up to `wait` seconds for another
    run to end, or raise `LockBusy`."""
    return LoadLock(lock_path(pipeline)).acquire(wait)


def check_file_free(pipeline: dlt.Pipeline, wait: float = 0.0, deadline: Optional[float] = None) -> None:
    """DuckDB only: raise `FileBusy` when another process holds the pipeline's DuckDB file open,
    after waiting up to `wait` seconds (and no later than the `time.monotonic()` `deadline`, the
    end of a wait that began with the load lock) for it to close it. Opens the file for writing
    and closes it at once (what the load is about to do anyway); any other error is left to the
    load."""
    destination = pipeline.destination
    if destination is None or not destination.destination_type.endswith(".duckdb"):
        return
    path = _duckdb_path(pipeline)
    if not path or not os.path.exists(path):
        return  # nobody can hold a file that does not exist yet
    deadline = min(time.monotonic() + wait, deadline if deadline is not None else float("inf"))
    announced = False
    while True:
        try:
            duckdb.connect(path).close()
            return
        except duckdb.Error as exc:
            busy = file_busy(exc)
            if busy is None:
                log.debug("DuckDB start check of %s: %s", path, exc)
                return
        left = deadline - time.monotonic()
        if left <= 0:
            raise busy
        if not announced:
            log.info("the DuckDB file %s is open in another process (PID %s); waiting up to %g s for it to be closed",
                     path, busy.pid or "unknown", wait, extra={"event": "waiting", "waiting_for": "duckdb_file", "holder_pid": busy.pid})
            announced = True
        time.sleep(min(POLL_SECONDS, left))
