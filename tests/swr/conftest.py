"""Fixtures of the SWR tests: an emulator over an inventory, the source pointed at it, and the
unified rows expected from the inventory (SWR lists tagged images only)."""

from __future__ import annotations

import os
from collections import Counter
from typing import Callable, Dict, Iterator, List, Optional, Tuple, Type

import pytest

from emulators.base import Faults
from emulators.inventory import Inventory, Repository
from emulators.swr import (
    DEMO_ACCESS_KEY,
    DEMO_PROJECT_ID,
    DEMO_SECRET_KEY,
    DEMO_TOKEN,
    SwrEmulator,
)
from pipelines.load import run_load
from tests.support import truncate_us

REGION = "cn-north-4"


def swr_registry(namespace: str) -> str:
    return f"swr.{REGION}.myhuaweicloud.com/{namespace}"


@pytest.fixture
def swr_env(monkeypatch) -> Iterator[Callable[..., SwrEmulator]]:
    """Start an SWR emulator over an inventory and point the source at it (AK/SK or token)."""
    started: List[SwrEmulator] = []

    def start(
        inventory: Inventory,
        faults: Optional[Faults] = None,
        auth: str = "aksk",
        emulator_class: Type[SwrEmulator] = SwrEmulator,
        **kwargs,
    ) -> SwrEmulator:
        emulator = emulator_class(
            inventory,
            region=REGION,
            credentials={DEMO_ACCESS_KEY: DEMO_SECRET_KEY},
            tokens={DEMO_TOKEN: None},
            faults=faults,
            **kwargs,
        ).start()
        started.append(emulator)
        for key in list(os.environ):
            if key.startswith("SOURCES__SWR__"):
                monkeypatch.delenv(key)
        monkeypatch.setenv("SOURCES__SWR__REGION", REGION)
        monkeypatch.setenv("SOURCES__SWR__BASE_URL", emulator.url)
        if auth == "aksk":
            monkeypatch.setenv("SOURCES__SWR__ACCESS_KEY", DEMO_ACCESS_KEY)
            monkeypatch.setenv("SOURCES__SWR__SECRET_KEY", DEMO_SECRET_KEY)
            monkeypatch.setenv("SOURCES__SWR__PROJECT_ID", DEMO_PROJECT_ID)
        else:
            monkeypatch.setenv("SOURCES__SWR__AUTH_TOKEN", DEMO_TOKEN)
        # dlt's retries back off exponentially: keep the fault tests quick
        monkeypatch.setenv("RUNTIME__REQUEST_BACKOFF_FACTOR", "0.01")
        monkeypatch.setenv("RUNTIME__REQUEST_MAX_RETRY_DELAY", "0.05")
        return emulator

    yield start
    for emulator in started:
        emulator.stop()


def load(pipeline, **options) -> Tuple[object, Counter]:
    counter: Counter = Counter()
    summary = run_load(pipeline, ["swr"], source_options={"swr": {"request_counter": counter, **options}})
    return summary, counter


# ---- expected values, from the inventory (SWR shows only what a tag points at)


def tagged(repo: Repository) -> List[str]:
    return sorted(set(repo.tags.values()))


def expected_images(inventory: Inventory) -> Dict[tuple, tuple]:
    """(registry, repository, digest) -> (size_bytes, created_at, media_type, layer_count, child_count)."""
    out = {}
    for repo in inventory.repositories():
        for digest in tagged(repo):
            image = repo.images[digest]
            out[(swr_registry(repo.registry), repo.name, digest)] = (
                image.content_size,
                truncate_us(image.created_ns),
                image.media_type,
                None if image.is_index else len(image.layers),
                len(image.children) if image.is_index else None,
            )
    return out


def expected_layers(inventory: Inventory) -> Dict[tuple, List[tuple]]:
    return {
        (swr_registry(repo.registry), repo.name, digest): [(l.digest, l.size) for l in repo.images[digest].layers]
        for repo in inventory.repositories()
        for digest in tagged(repo)
        if not repo.images[digest].is_index
    }


def expected_children(inventory: Inventory) -> Dict[tuple, List[tuple]]:
    return {
        (swr_registry(repo.registry), repo.name, digest): [
            (c.digest, c.platform[0], c.platform[1], c.platform[2], len(c.raw)) for c in repo.images[digest].children
        ]
        for repo in inventory.repositories()
        for digest in tagged(repo)
        if repo.images[digest].is_index
    }


def expected_tags(inventory: Inventory) -> Dict[tuple, str]:
    return {
        (swr_registry(repo.registry), repo.name, tag): digest
        for repo in inventory.repositories()
        for tag, digest in repo.tags.items()
    }


def expected_repositories(inventory: Inventory, emulator: SwrEmulator) -> Dict[tuple, tuple]:
    """(registry, repository) -> (created_at, updated_at, image_count, pull_count, size_bytes, path)."""
    return {
        (swr_registry(repo.registry), repo.name): (
            truncate_us(repo.created_ns),
            truncate_us(emulator.repository_updated_ns(repo)),
            len(repo.tags),
            sum(image.pull_count for image in repo.images.values()),
            sum(repo.images[digest].content_size for digest in tagged(repo)),
            f"swr.{REGION}.myhuaweicloud.com/{repo.registry}/{repo.name}",
        )
        for repo in inventory.repositories()
    }
