"""Fixtures for the OCI source: a REAL registry (Debian's `docker-registry`) on loopback.

Each test starts its own registry process (in-memory storage, ready in ~0.1 s) and pushes the
images it needs with plain HTTP uploads. Without the binary the tests skip on a developer's
machine and FAIL in CI (`CI` set), where `.ci/run` installs the package.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any, Callable, Iterator, List, Optional

import pytest

from emulators.base import Faults
from emulators.inventory import Inventory
from emulators.oci import CountingProxy, Pusher, RegistryData, RegistryProcess, RegistryUnavailable
from pipelines.load import run_load
from tests.support import registry_unavailable


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch) -> None:
    """dlt's retry backoff without waiting (Retry-After 0 falls back to the backoff)."""
    monkeypatch.setenv("RUNTIME__REQUEST_BACKOFF_FACTOR", "0")
    monkeypatch.setenv("RUNTIME__REQUEST_MAX_ATTEMPTS", "6")
    for key in list(os.environ):
        if key.startswith("SOURCES__OCI__"):
            monkeypatch.delenv(key)


@pytest.fixture
def start_registry(tmp_path) -> Iterator[Callable[..., RegistryProcess]]:
    """Start `docker-registry serve` with a temp config; stopped after the test."""
    started: List[Any] = []

    def start(**kwargs: Any) -> RegistryProcess:
        for attempt in range(2):  # a free port can be taken between probing and binding
            process = RegistryProcess(str(tmp_path / f"registry-{len(started)}-{attempt}"), **kwargs)
            try:
                process.start()
            except RegistryUnavailable as exc:
                if "not installed" in str(exc) or attempt == 1:
                    registry_unavailable(str(exc))
                continue
            started.append(process)
            return process
        raise AssertionError("unreachable")

    yield start
    for item in started:
        item.stop()


@pytest.fixture
def proxy_to() -> Iterator[Callable[..., CountingProxy]]:
    proxies: List[CountingProxy] = []

    def start(url: str, faults: Optional[Faults] = None, **kwargs: Any) -> CountingProxy:
        proxy = CountingProxy(url, faults, **kwargs).start()
        proxies.append(proxy)
        return proxy

    yield start
    for proxy in proxies:
        proxy.stop()


def pushed_registry(start_registry, inventory: Inventory, **kwargs: Any):
    """A registry holding the inventory's images; returns (process, data, pusher)."""
    process = start_registry(**kwargs)
    data = RegistryData(inventory)
    pusher = Pusher(process.url)
    pusher.push_all(data)
    return process, data, pusher


def load_oci(pipeline, **options: Any) -> Counter:
    """One `registry-etl load oci` run (the CLI's load runner); returns the calls per kind."""
    counter: Counter = Counter()
    run_load(pipeline, ["oci"], source_options={"oci": {"request_counter": counter, **options}})
    return counter
