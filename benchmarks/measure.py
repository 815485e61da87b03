"""Run one load in a fresh child process and measure it: wall time of the load itself (not the
interpreter start), CPU time and peak RSS of the child and of any worker processes under it
(sampled from the parent)."""

from __future__ import annotations

import importlib
import multiprocessing
import os
import resource
import time
import traceback
from typing import Any, Callable, Dict, Optional

from .proc import TreeSampler


def _resolve(ref: str) -> Callable[..., Any]:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def _child(ref: str, kwargs: Dict[str, Any], env: Dict[str, str], conn: Any) -> None:
    try:
        os.environ.update(env)
        target = _resolve(ref)
        before = resource.getrusage(resource.RUSAGE_SELF)
        conn.send({"started": True})  # the parent samples this process's tree from now on
        started = time.perf_counter()
        result = target(**kwargs)
        seconds = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_SELF)
        own_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        conn.send(
            {
                "ok": True,
                "seconds": seconds,
                "own_cpu_seconds": own_cpu,
                "own_peak_rss_mb": after.ru_maxrss / 1024.0,  # KiB on Linux
                "result": result,
            }
        )
    except BaseException as exc:  # report it to the parent, which prints it
        conn.send({"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()})


def measure(ref: str, env: Dict[str, str], **kwargs: Any) -> Dict[str, Any]:
    """Call `ref` ("module:function") with `kwargs` in a spawned child with `env` set.

    The child's worker processes are sampled from here, not from a thread in the child: a
    sampler inside the measured process scanned /proc at ~0.05 CPU-s per second of wall and
    competed for its GIL, which inflated the load's own CPU and wall."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_child, args=(ref, kwargs, env, child), name="bench-load")
    process.start()
    child.close()
    tree: Optional[TreeSampler] = None
    try:
        answer = parent.recv()
        if answer.get("started"):
            with TreeSampler(root=process.pid) as tree:
                answer = parent.recv()
    except EOFError:
        answer = {"ok": False, "error": f"the child died (exit code {process.exitcode})"}
    process.join()
    if answer.get("ok") and tree is not None:
        answer.update(
            {
                # the child and its worker processes
                "cpu_seconds": answer["own_cpu_seconds"] + tree.other_cpu_seconds(),
                # the largest sum of memory (PSS) over the child and its workers (sampled every
                # 0.1 s), and never less than the child's own exact peak RSS
                "peak_rss_mb": max(answer["own_peak_rss_mb"], tree.peak_memory_bytes / 2**20),
                "tree_peak_pss_mb": tree.peak_memory_bytes / 2**20,
                "processes": tree.peak_processes,
            }
        )
    return answer
