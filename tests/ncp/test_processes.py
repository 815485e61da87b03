"""NCP tags read in worker processes: exactly the rows one process loads, the workers' calls
counted, and a worker's failure reaching the caller as our error (no secret in it)."""

from __future__ import annotations

import os

import pytest

import sources.ncp as ncp_module
from emulators.base import Response
from emulators.inventory import Inventory
from tests.ncp.conftest import load
from tests.ncp.test_source import assert_matches_inventory
from tests.support import (
    assert_our_auth_error,
    change_inventory,
    force_worker_processes,
    load_snapshot,
    new_pipeline,
    tag_history,
)


@pytest.fixture
def in_processes(monkeypatch):
    force_worker_processes(monkeypatch, ncp_module)


def snapshot(pipeline):
    return load_snapshot(
        pipeline,
        "ncp",
        ncp_tags="SELECT registry, repository, tag, digest, platform_count FROM ncp_tags",
        repositories="SELECT registry, repository, pull_count FROM repositories",
    )


def test_worker_processes_load_exactly_what_one_process_loads(tmp_path, ncp_env, in_processes):
    inventory = Inventory(seed=41, registries=("reg-a", "reg-b"), repositories=10, images=300)
    emulator = ncp_env(inventory)
    pooled, single = new_pipeline(tmp_path / "pooled"), new_pipeline(tmp_path / "single")
    _, counter = load(pooled, processes=2)
    load(single, processes=1)
    assert_matches_inventory(pooled, inventory)
    assert snapshot(pooled) == snapshot(single)
    # the workers' calls are counted in the caller's counter: each load read every repository's tags
    assert counter["ListTags"] == emulator.counters["ListTags"] / 2 >= 10

    # a rerun reads only the repositories that changed, in workers too, and retires moved tags
    change_inventory(inventory, emulator)
    load(pooled, processes=2)
    load(single, processes=1)
    assert_matches_inventory(pooled, inventory)
    assert snapshot(pooled) == snapshot(single)
    # moved and deleted tags closed their rows: the history holds more than the open tags
    closed = [rows for rows in tag_history(pooled, "ncp").values() if any(not open_ for _, open_ in rows)]
    assert len(closed) >= 12


def test_a_failure_in_a_worker_reaches_the_caller_as_our_error(tmp_path, ncp_env, in_processes):
    emulator = ncp_env(Inventory(seed=42, registries=("reg-a",), repositories=6, images=60))
    secret = os.environ["SOURCES__NCP__SECRET_KEY"]

    def refuse(request, response):
        return Response(401, {"error": {"errorCode": "200", "message": "Authentication Failed", "details": "refused"}})

    emulator.corrupt("ListTags", refuse)
    with pytest.raises(Exception) as caught:
        load(new_pipeline(tmp_path), processes=2)
    # the hint names the setting to check
    assert_our_auth_error(caught, secret, "ListTags", "reg-a", "Authentication Failed", "secret_key")
