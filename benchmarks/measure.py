"""Run one load in a fresh child process and measure it: wall time of the load itself (not the
interpreter start), CPU time and peak RSS of the child and of any worker processes under it."""

from __future__ import annotations

import importlib
import multiprocessing
import os
import resource
import time
import traceback
from typing import Any, Callable, Dict

from .proc import TreeSampler


def _resolve(ref: str) -> Callable[..., Any]:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def _child(ref: str, kwargs: Dict[str, Any], env: Dict[str, str], conn: Any) -> None:
    try:
        os.environ.update(env)
        target = _resolve(ref)
        before = resource.getrusage(resource.RUSAGE_SELF)
        with TreeSampler() as tree:
            started = time.perf_counter()
            result = target(**kwargs)
            seconds = time.perf_counter() - started
            after = resource.getrusage(resource.RUSAGE_SELF)
        own_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        conn.send(
            {
                "ok": True,
                "seconds": seconds,
                # this process and its worker processes
                "cpu_seconds": own_cpu + tree.other_cpu_seconds(),
                "own_cpu_seconds": own_cpu,
                # the largest sum of memory (PSS) over this process and its workers (sampled
                # every 0.1 s), and never less than this process's own exact peak RSS
                "peak_rss_mb": max(after.ru_maxrss / 1024.0, tree.peak_memory_bytes / 2**20),
                "tree_peak_pss_mb": tree.peak_memory_bytes / 2**20,
                "own_peak_rss_mb": after.ru_maxrss / 1024.0,  # KiB on Linux
                "processes": tree.peak_processes,
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
