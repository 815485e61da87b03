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

log = logging.getLogger("registry_etl.lock")


class LockBusy(Exception):
    """Another load holds the lock of this dataset."""

    def __init__(self, path: str, holder: Dict[str, Any]) -> None:
        self.path = path
        self.holder = holder
        who = ", ".join(f"{k} {v}" for k, v in holder.items() if k in ("pid", "host", "since")) or "unknown process"
        super().__init__(
            f"another load of this dataset is running ({who}); this run stops without loading. "
            f"Lock file: {path}"
        )


class LoadLock:
    """Exclusive, non-blocking lock on one file; use as a context manager."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._handle: Optional[Any] = None

    def acquire(self) -> "LoadLock":
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                handle.close()
                raise
            handle.seek(0)
            holder = _parse_holder(handle.read())
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


def acquire(pipeline: dlt.Pipeline) -> LoadLock:
    """Take the load lock of the pipeline's dataset or raise `LockBusy`."""
    return LoadLock(lock_path(pipeline)).acquire()
