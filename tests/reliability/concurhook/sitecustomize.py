"""Test-only: makes `python -m pipelines.cli load …` subprocesses meet at a barrier right before
they ask for the load lock, so two loads ask for it at the same moment (not one after the other
because one interpreter happened to start faster).

Active only when CONCURRENCY_BARRIER_DIR names a folder (the concurrency tests put this folder on
the subprocess's PYTHONPATH; Python imports `sitecustomize` at start-up). Each process drops a
file `arrived.<pid>` there and waits until CONCURRENCY_BARRIER_PARTIES files are there (at most
two minutes). Nothing else changes.
"""

import os
import time

BARRIER = os.environ.get("CONCURRENCY_BARRIER_DIR")
PARTIES = int(os.environ.get("CONCURRENCY_BARRIER_PARTIES", "2"))


def _install() -> None:
    from pipelines import lock

    original = lock.LoadLock.acquire

    def acquire(self, wait=0.0):
        open(os.path.join(BARRIER, f"arrived.{os.getpid()}"), "w").close()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if sum(name.startswith("arrived.") for name in os.listdir(BARRIER)) >= PARTIES:
                break
            time.sleep(0.001)
        return original(self, wait)

    lock.LoadLock.acquire = acquire


if BARRIER:
    _install()
