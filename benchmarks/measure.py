"""Run one load in a fresh child process and measure it: wall time of the load itself (not the
interpreter start), CPU time, and peak RSS (the child's own ru_maxrss)."""

from __future__ import annotations

import importlib
import multiprocessing
import os
import resource
import time
import traceback
from typing import Any, Callable, Dict


def _resolve(ref: str) -> Callable[..., Any]:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def _child(ref: str, kwargs: Dict[str, Any], env: Dict[str, str], conn: Any) -> None:
    try:
        os.environ.update(env)
        target = _resolve(ref)
        before = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        result = target(**kwargs)
        seconds = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_SELF)
        conn.send(
            {
                "ok": True,
                "seconds": seconds,
                "cpu_seconds": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
                "peak_rss_mb": after.ru_maxrss / 1024.0,  # KiB on Linux
                "result": result,
            }
        )
    except BaseException as exc:  # report it to the parent, which prints it
        conn.send({"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()})


def measure(ref: str, env: Dict[str, str], **kwargs: Any) -> Dict[str, Any]:
    """Call `ref` ("module:function") with `kwargs` in a spawned child with `env` set."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_child, args=(ref, kwargs, env, child), name="bench-load")
    process.start()
    child.close()
    try:
        answer = parent.recv()
    except EOFError:
        answer = {"ok": False, "error": f"the child died (exit code {process.exitcode})"}
    process.join()
    return answer
