"""A source's emulator in its own process, so its CPU does not share the loader's GIL.

The inventory is generated once per (seed, size, registries) and cached as a pickle under
`benchmarks/results/cache/` (generating 200,000 images takes more than a minute).
"""

from __future__ import annotations

import gc
import importlib
import json
import logging
import multiprocessing
import os
import pickle
import time
import urllib.request
from dataclasses import dataclass, replace
from typing import Any, Dict, Optional, Tuple

log = logging.getLogger("registry_etl.bench")

CACHE_DIR = os.path.join(os.path.dirname(__file__), "results", "cache")


@dataclass(frozen=True)
class InventorySpec:
    registries: Tuple[str, ...]
    repositories: int
    images: int
    layers_per_image: int = 5
    tags_per_image: int = 2
    seed: int = 1

    def cache_path(self) -> str:
        name = f"inventory-{self.seed}-{'+'.join(self.registries)}-{self.repositories}r-{self.images}i-{self.layers_per_image}l-{self.tags_per_image}t.pickle"
        return os.path.join(CACHE_DIR, name)


def build_inventory(spec: InventorySpec) -> Any:
    from emulators.inventory import Inventory

    path = spec.cache_path()
    if os.path.exists(path):
        with open(path, "rb") as handle:
            return pickle.load(handle)
    started = time.monotonic()
    inventory = Inventory(
        seed=spec.seed,
        registries=spec.registries,
        repositories=spec.repositories,
        images=spec.images,
        layers_per_image=spec.layers_per_image,
        tags_per_image=spec.tags_per_image,
    )
    log.info("generated the inventory in %.1f s", time.monotonic() - started)
    os.makedirs(CACHE_DIR, exist_ok=True)
    with open(path + ".tmp", "wb") as handle:
        pickle.dump(inventory, handle, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(path + ".tmp", path)
    return inventory


def _serve(provider_name: str, spec: InventorySpec, faults: Dict[str, Any], conn: Any) -> None:
    import sys

    sys.setrecursionlimit(10000)
    from emulators.base import Faults
    from pipelines.catalog import PROVIDERS

    from .sources import BENCH_SOURCES

    source = BENCH_SOURCES.get(provider_name)
    share = 1.0
    if source is not None and source.max_images and spec.images > source.max_images:
        # a source whose emulator cannot hold the asked size in reasonable time (OCI: real pushes)
        share = source.max_images / spec.images
        spec = replace(spec, images=source.max_images, repositories=max(1, round(spec.repositories * share)))
        log.warning("%s: inventory capped at %d images in %d repositories", provider_name, spec.images, spec.repositories)
    inventory = build_inventory(spec)
    if source is not None and source.starter:
        module, _, attr = source.starter.partition(":")
        start = getattr(importlib.import_module(module), attr)
        emulator, env = start(inventory=inventory, faults=Faults(**faults))
        if share < 1.0:
            emulator.push_scale = share  # "push 1% of --images" stays 1% of the capped inventory
    else:
        emulator, env = PROVIDERS[provider_name].start_demo_emulator(inventory=inventory, faults=Faults(**faults))
    # No cyclic collector in the emulator: its full passes over the inventory (2.6 million
    # objects at 200,000 images) stopped every request for up to 1.8 s (2 passes, 3.2 s over an
    # ECR run; with the inventory frozen, 10 passes of up to 0.6 s over what the emulator builds
    # later), which landed in whichever phase was running: a registry's own pauses are not ours
    # to measure. Without it the emulator leaves ~80,000 objects in cycles over a whole run
    # (ECR, 200,000 images) and its peak RSS did not move (1,407 MB).
    gc.disable()
    conn.send({"url": emulator.url, "env": env, "counts": inventory.counts()})
    try:
        conn.recv()  # any message (or the parent's end) stops the emulator
    except EOFError:
        pass
    emulator.stop()


class EmulatorProcess:
    """Start with `with EmulatorProcess(...) as emu:`; `emu.env` points a source at it."""

    def __init__(self, provider_name: str, spec: InventorySpec, faults: Optional[Dict[str, Any]] = None) -> None:
        self.provider_name = provider_name
        self.spec = spec
        self.faults = faults or {}
        self.url = ""
        self.env: Dict[str, str] = {}
        self.counts: Dict[str, int] = {}

    def __enter__(self) -> "EmulatorProcess":
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(
            target=_serve, args=(self.provider_name, self.spec, self.faults, child), name=f"{self.provider_name}-emulator", daemon=True
        )
        self._process.start()
        child.close()
        if not self._conn.poll(900):
            raise RuntimeError(f"the {self.provider_name} emulator did not start")
        ready = self._conn.recv()
        self.url, self.env, self.counts = ready["url"], ready["env"], ready["counts"]
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self._conn.send("stop")
        except OSError:
            pass
        self._process.join(30)
        if self._process.is_alive():
            self._process.terminate()

    def cpu_seconds(self) -> float:
        """CPU time the emulator process used so far."""
        from .proc import cpu_seconds

        return cpu_seconds(self._process.pid)

    # ---- control endpoints (emulators.base)
    def _call(self, path: str, body: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method="POST" if data is not None else "GET")
        with urllib.request.urlopen(request, timeout=600) as answer:
            return json.loads(answer.read())

    def counters(self) -> Dict[str, int]:
        return dict(self._call("/_emulator/counters")["requests"])

    def reset_counters(self) -> None:
        self._call("/_emulator/reset-counters", {})

    def mutate(self, **changes: int) -> Dict[str, int]:
        return self._call("/_emulator/mutate", changes)["changed"]

    def set_faults(self, **faults: Any) -> None:
        self._call("/_emulator/faults", faults)
