"""CPU time and memory of a process and every process under it, read from /proc (Linux).

A load may read repositories in worker processes (forked from a forkserver, so neither
`RUSAGE_SELF` nor `RUSAGE_CHILDREN` sees them): `TreeSampler` walks the process tree every
`interval` seconds and keeps the peak of the summed memory (PSS) and each process's last CPU time.
"""

from __future__ import annotations

import os
import threading
from typing import Dict, Iterable, List, Optional

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat(pid: int) -> Optional[List[str]]:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            text = handle.read()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()  # fields after the command name


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process so far (0 when it is gone)."""
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / _TICKS if fields else 0.0


def rss_bytes(pid: int) -> int:
    fields = _stat(pid)
    return int(fields[21]) * _PAGE if fields else 0


def pss_bytes(pid: int) -> int:
    """Proportional set size: pages shared with other processes (a forkserver's children
    share its imported modules copy-on-write) count in part, so a tree's PSS adds up to the
    memory it really holds, where its summed RSS counts shared pages once per process."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return rss_bytes(pid)


def descendants(root: int) -> List[int]:
    children: Dict[int, List[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            fields = _stat(int(name))
            if fields:
                children.setdefault(int(fields[1]), []).append(int(name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        for child in children.get(pid, ()):
            found.append(child)
            todo.append(child)
    return found


class TreeSampler:
    """Samples the process tree under `root` (default: this process) in a thread."""

    def __init__(self, root: Optional[int] = None, interval: float = 0.1) -> None:
        self.root = root or os.getpid()
        self.interval = interval
        self.peak_memory_bytes = 0
        self.peak_processes = 1
        self._cpu: Dict[int, float] = {}
        self._start_cpu: Dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tree-sampler", daemon=True)

    def __enter__(self) -> "TreeSampler":
        for pid in self._tree():
            self._start_cpu[pid] = cpu_seconds(pid)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _tree(self) -> Iterable[int]:
        return [self.root] + descendants(self.root)

    def _sample(self) -> None:
        pids = [pid for pid in self._tree() if pid != self.root]
        memory = sum(pss_bytes(pid) for pid in pids)
        for pid in pids:
            seconds = cpu_seconds(pid)
            if seconds:
                self._cpu[pid] = seconds
        self.peak_memory_bytes = max(self.peak_memory_bytes, memory + pss_bytes(self.root))
        self.peak_processes = max(self.peak_processes, 1 + len(pids))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def other_cpu_seconds(self) -> float:
        """CPU of the processes under the root during the sampling (the root's own is
        measured exactly with getrusage by the caller)."""
        return sum(cpu - self._start_cpu.get(pid, 0.0) for pid, cpu in self._cpu.items())
