"""OCI in the benchmark: a real `docker-registry` with the generated inventory pushed into it,
behind `emulators.oci.CountingProxy`, which gives it what the benchmark needs of an emulator:
request counters, injected latency and `POST /_emulator/mutate` (tags moved and images pushed
in the registry itself, through `RegistryData`).

Pushing is the slow part: about 30 pushes/s on the 2-core benchmark machine (1,000 pushes in
35 s), so the benchmark caps OCI's inventory (`BenchSource.max_images`).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Dict, Optional, Tuple

from emulators.base import Faults
from emulators.inventory import Inventory
from emulators.oci import CountingProxy, Pusher, RegistryData, RegistryProcess, demo_env

log = logging.getLogger("registry_etl.bench")


class BenchRegistry(CountingProxy):
    """A counting proxy that owns its registry process and applies mutations to it.

    `push_scale`: the benchmark asks for 1% of `--images` new images; with the inventory capped,
    the emulator process sets this to the cap's share so that 1% stays 1% of what was pushed.
    """

    push_scale = 1.0

    def __init__(self, process: RegistryProcess, data: RegistryData, faults: Optional[Faults] = None) -> None:
        super().__init__(process.url, faults)
        self.process = process
        self.data = data
        self.inventory = data.inventory
        self.pusher = Pusher(process.url)

    def mutate(self, changes: Dict[str, int]) -> Dict[str, int]:
        """`move_tags` and `push_images` made in the registry (PUT manifest / blob uploads)."""
        unknown = set(changes) - {"move_tags", "push_images"}
        if unknown:
            raise ValueError(f"the OCI benchmark registry cannot {', '.join(sorted(unknown))}")
        moved = self.data.move_tags(self.pusher, int(changes.get("move_tags", 0)))
        asked = int(changes.get("push_images", 0))
        pushed = self.data.push_images(self.pusher, max(1, round(asked * self.push_scale)) if asked else 0)
        return {"move_tags": len(moved), "push_images": len(pushed)}

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            self.process.stop()


def start(inventory: Inventory, faults: Optional[Faults] = None, **_: Any) -> Tuple[BenchRegistry, Dict[str, str]]:
    """Start `docker-registry`, push `inventory` (its one registry) into it, and put the
    counting proxy in front; returns the proxy and the env that points `sources.oci` at it."""
    data = RegistryData(inventory)
    process = RegistryProcess().start()
    try:
        started = time.monotonic()
        Pusher(process.url).push_all(data)
        log.info("oci: pushed %s in %.1f s", data.counts(), time.monotonic() - started)
        proxy = BenchRegistry(process, data, faults)
        proxy.start()
    except BaseException:
        process.stop()
        raise
    return proxy, demo_env(proxy.url)
