"""Fixtures for the NCP tests: an emulator over an inventory, the source pointed at it, and
the expected unified rows computed from the inventory (never from the emulator's answers)."""

from __future__ import annotations

from collections import Counter
from typing import Dict, Iterator, List, Optional

import pytest

from emulators.base import Faults
from emulators.inventory import Image, Inventory, Repository
from emulators.ncp import REGION_CODES, NcpEmulator, demo_env
from pipelines.load import run_load
from tests.support import truncate_ms

SECRET_NAMES = ("SOURCES__NCP__ACCESS_KEY", "SOURCES__NCP__SECRET_KEY", "SOURCES__NCP__REGISTRIES", "SOURCES__NCP__REGION")


@pytest.fixture
def ncp_env(monkeypatch) -> Iterator:
    """Start an NCP emulator over an inventory and point the source at it (fast retries)."""
    started: List[NcpEmulator] = []
    for name in SECRET_NAMES:
        monkeypatch.delenv(name, raising=False)
    # dlt's REST client backs off 1 s, 2 s, … by default; the faults tests need not wait that long
    monkeypatch.setenv("RUNTIME__REQUEST_BACKOFF_FACTOR", "0.01")
    monkeypatch.setenv("RUNTIME__REQUEST_MAX_ATTEMPTS", "8")

    def start(inventory: Inventory, faults: Optional[Faults] = None, region: str = "kr", **kwargs) -> NcpEmulator:
        emulator = NcpEmulator(inventory, faults, **kwargs).start()
        started.append(emulator)
        for key, value in demo_env(emulator, region).items():
            monkeypatch.setenv(key, value)
        return emulator

    yield start
    for emulator in started:
        emulator.stop()


def load(pipeline, full_refresh: bool = False, source_full_refresh: bool = False, **options):
    """One run of the ncp source; `full_refresh` is the CLI's (drop and reload), `source_full_refresh`
    the source's own option (read every image's tags, keep the data)."""
    counter: Counter = Counter()
    if source_full_refresh:
        options["full_refresh"] = True
    summary = run_load(pipeline, ["ncp"], full_refresh=full_refresh, source_options={"ncp": {"request_counter": counter, **options}})
    return summary, counter


def endpoint(registry: str, region: str = "kr") -> str:
    return f"{registry}.{REGION_CODES[region]}.ncr.ntruss.com"


def visible(repo: Repository) -> Dict[str, Image]:
    """What NCP shows: tagged manifests and the children of tagged indexes (untagged images are
    not listed by the NCP API)."""
    out: Dict[str, Image] = {}
    for digest in repo.tags.values():
        image = repo.images[digest]
        out[digest] = image
        for child in image.children:
            out[child.digest] = child
    return out


def _ms_time(ns: Optional[int]):
    return None if ns is None else truncate_ms(ns)


def expected_images(inventory: Inventory, region: str = "kr") -> Dict[tuple, tuple]:
    """(registry, repository, digest) -> (size, created, last_pulled, media_type, os, arch, variant, child_count)."""
    out = {}
    for repo in inventory.repositories():
        for digest, image in visible(repo).items():
            key = (endpoint(repo.registry, region), repo.name, digest)
            if image.is_index:
                created = min(child.created_ns for child in image.children)
                pulled = [c.last_pulled_ns for c in image.children if c.last_pulled_ns is not None]
                out[key] = (image.content_size, truncate_ms(created), _ms_time(max(pulled) if pulled else None),
                            None, None, None, None, len(image.children))
            else:
                os_name, arch, variant = image.platform or ("linux", "amd64", None)
                out[key] = (image.content_size, truncate_ms(image.created_ns), _ms_time(image.last_pulled_ns),
                            image.media_type, os_name, arch, variant, None)
    return out


def expected_children(inventory: Inventory, region: str = "kr") -> Dict[tuple, List[tuple]]:
    """(registry, repository, index digest) -> [(child digest, media type, os, arch, variant, size), …]."""
    out = {}
    for repo in inventory.repositories():
        for digest, image in visible(repo).items():
            if image.is_index:
                out[(endpoint(repo.registry, region), repo.name, digest)] = [
                    (c.digest, c.media_type, c.platform[0], c.platform[1], c.platform[2], c.content_size)
                    for c in image.children
                ]
    return out


def expected_tags(inventory: Inventory, region: str = "kr") -> Dict[tuple, str]:
    return {
        (endpoint(repo.registry, region), repo.name, tag): digest
        for repo in inventory.repositories()
        for tag, digest in repo.tags.items()
    }


def expected_repositories(inventory: Inventory, region: str = "kr") -> Dict[tuple, tuple]:
    """(registry, repository) -> (pull_count, description); updated_at is checked separately."""
    return {
        (endpoint(repo.registry, region), repo.name): (
            sum(image.pull_count for image in visible(repo).values()),
            repo.description,
        )
        for repo in inventory.repositories()
    }
