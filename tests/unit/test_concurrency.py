"""sources.concurrency.stream_bounded: outputs handed over as they are made, bounded, in order per
item; release_freed_memory: the freed heap goes back to the system."""

from __future__ import annotations

import sys
import threading
from typing import Iterator, List

import pytest

from sources.concurrency import stream_bounded
from tests.support import ROOT


def test_every_output_of_every_item_once_in_order_per_item() -> None:
    items = ["a", "b", "c", "d", "e"]

    def outputs(item: str) -> Iterator[str]:
        for n in range(3):
            yield f"{item}{n}"

    seen = {item: [] for item in items}
    for item, output in stream_bounded(outputs, items, workers=3):
        seen[item].append(output)
    assert seen == {item: [f"{item}0", f"{item}1", f"{item}2"] for item in items}


def test_an_output_leaves_before_its_item_is_done() -> None:
    """The item waits for the caller to have received its first output: holding outputs until
    the item is done (as map_bounded does) would never finish."""
    received = threading.Event()

    def outputs(item: int) -> Iterator[int]:
        yield 1
        assert received.wait(10), "the first output was held back"
        yield 2

    got: List[object] = []
    for _item, output in stream_bounded(outputs, [0], workers=1):
        got.append(output)
        received.set()
    assert got == [1, 2]


def test_at_most_buffered_outputs_wait_for_the_caller() -> None:
    made = []

    def outputs(item: int) -> Iterator[int]:
        for n in range(50):
            made.append(n)
            yield n

    stream = stream_bounded(outputs, [0], workers=1, buffered=2)
    assert next(stream) == (0, 0)
    threading.Event().wait(0.3)  # the producer runs ahead as far as the queue lets it
    assert len(made) <= 4  # one taken, two queued, one waiting to be put
    stream.close()


def test_the_first_failure_is_raised_and_the_others_stop() -> None:
    started = []

    def outputs(item: int) -> Iterator[int]:
        started.append(item)
        if item == 1:
            raise ValueError("page 1 is bad")
        for n in range(1000):
            yield n

    with pytest.raises(ValueError, match="page 1 is bad"):
        for _ in stream_bounded(outputs, list(range(10)), workers=2, buffered=1):
            pass
    assert len(started) < 10  # items not started when it failed are never read
    assert not [t for t in threading.enumerate() if t.name.startswith("registry-etl-stream")]


def test_a_caller_stopping_early_stops_the_threads() -> None:
    def outputs(item: int) -> Iterator[int]:
        while True:
            yield item

    stream = stream_bounded(outputs, [1, 2, 3], workers=3)
    next(stream)
    stream.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("registry-etl-stream")]


def test_the_relaxed_collector_is_undone_after_the_block() -> None:
    import gc

    from sources.concurrency import COLLECTOR_THRESHOLDS, relaxed_collector

    before, frozen = gc.get_threshold(), gc.get_freeze_count()
    with relaxed_collector():
        assert gc.get_threshold() == COLLECTOR_THRESHOLDS
        assert gc.get_freeze_count() > frozen
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


_FREED_BUT_KEPT = """
import json
from sources.concurrency import release_freed_memory

def rss_mb():
    with open("/proc/self/status") as status:
        return int(next(line for line in status if line.startswith("VmRSS")).split()[1]) / 1024

chunks = [bytes(1024) + bytes([i % 256]) for i in range(150_000)]  # ~150 MB of malloc's heap
pinned = [bytes(2048) for _ in range(10)]  # allocated after them: the heap's top stays in use
del chunks
freed = rss_mb()
release_freed_memory()
print(json.dumps({"freed": freed, "released": rss_mb()}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="malloc_trim is glibc's")
def test_release_freed_memory_gives_the_freed_heap_back():
    """Freed below a live allocation, glibc keeps the memory (RSS stays); released, it goes back
    (what the extract leaves before the load step: Yandex's peak 991 -> 867 MB)."""
    import json
    import subprocess

    done = subprocess.run([sys.executable, "-c", _FREED_BUT_KEPT], capture_output=True, text=True, check=True, cwd=ROOT)
    sizes = json.loads(done.stdout)
    assert sizes["freed"] - sizes["released"] > 80, sizes
