"""SWR tags read in worker processes: exactly the rows one process loads (history and stamps
included), the workers' calls counted, a repository gone mid-load still a problem row, and a
worker's failure reaching the caller as our error (no secret in it)."""

from __future__ import annotations

import os

import pytest

import sources.swr as swr_module
from emulators.base import Response
from emulators.inventory import Inventory
from tests.support import (
    assert_our_auth_error,
    change_inventory,
    current_tags,
    force_worker_processes,
    load_snapshot,
    new_pipeline,
    query,
    tag_history,
)
from tests.swr.conftest import expected_tags, load
from tests.swr.test_source import VanishingRepositoryEmulator, assert_matches_inventory


@pytest.fixture
def in_processes(monkeypatch):
    force_worker_processes(monkeypatch, swr_module)


def snapshot(pipeline):
    return load_snapshot(
        pipeline,
        "swr",
        swr_tags="SELECT registry, repository, tag, digest, size_bytes FROM swr_tags",
        repositories="SELECT registry, repository, image_count, updated_at FROM repositories",
        problems="SELECT registry, repository, call, reason FROM load_problems",
    )


def test_worker_processes_load_exactly_what_one_process_loads(tmp_path, swr_env, in_processes):
    inventory = Inventory(seed=51, registries=("ns-a", "ns-b"), repositories=20, images=400)
    emulator = swr_env(inventory)
    pooled, single = new_pipeline(tmp_path / "pooled"), new_pipeline(tmp_path / "single")
    _, counter = load(pooled, processes=2)
    load(single, processes=1)
    assert_matches_inventory(pooled, inventory, emulator)
    assert snapshot(pooled) == snapshot(single)
    # the workers' calls are counted in the caller's counter: each load read every repository's tags
    assert counter["list_tags"] == emulator.counters["list_tags"] / 2 >= 10

    # a rerun reads only the repositories whose stamp moved, in workers too, and retires moved tags
    change_inventory(inventory, emulator, moves=4, deletes=2, pushes=3)
    _, rerun = load(pooled, processes=2)
    load(single, processes=1)
    assert current_tags(pooled, "swr") == expected_tags(inventory)
    assert snapshot(pooled) == snapshot(single)
    assert 0 < rerun["list_tags"] < counter["list_tags"]
    closed = [rows for rows in tag_history(pooled, "swr").values() if any(not open_ for _, open_ in rows)]
    assert len(closed) >= 6

    # nothing changed: the stamps the workers' reads advanced hold, so no tag is read again
    _, again = load(pooled, processes=2)
    assert again["list_tags"] == 0
    assert snapshot(pooled)["history"] == snapshot(single)["history"]


def test_a_repository_gone_while_a_worker_reads_it_is_a_problem_and_is_read_again(tmp_path, swr_env, in_processes):
    inventory = Inventory(seed=52, registries=("ns-a",), repositories=6, images=60)
    gone = sorted(inventory.registries["ns-a"])[0]
    emulator = swr_env(inventory, emulator_class=VanishingRepositoryEmulator)
    emulator.vanishing = gone
    pipeline = new_pipeline(tmp_path)
    load(pipeline, processes=2)
    problems = query(pipeline, "SELECT repository, call, reason FROM load_problems")
    assert problems == [(gone, "list_tags", problems[0][2])] and "SVCSTG.SWR.4040003" in problems[0][2]
    expected = {k: v for k, v in expected_tags(inventory).items() if k[1] != gone}
    assert current_tags(pipeline, "swr") == expected
    # its stamp did not move with the others' (read in the workers): the next run reads it only
    emulator.vanishing = "no-such-repository"
    _, rerun = load(pipeline, processes=2)
    assert rerun["list_tags"] == 1
    assert_matches_inventory(pipeline, inventory, emulator)


def test_a_failure_in_a_worker_reaches_the_caller_as_our_error(tmp_path, swr_env, in_processes):
    emulator = swr_env(Inventory(seed=53, registries=("ns-a",), repositories=6, images=60))
    secret = os.environ["SOURCES__SWR__SECRET_KEY"]

    def refuse(request, response):
        return Response(401, {"error_code": "APIG.0303", "error_msg": "Incorrect IAM authentication information"})

    emulator.corrupt("list_tags", refuse)
    with pytest.raises(Exception) as caught:
        load(new_pipeline(tmp_path), processes=2)
    assert_our_auth_error(caught, secret, "list_tags", "ns-a", "APIG.0303")
