"""ECR reruns that skip unchanged repositories (listing fingerprints in state), and reading
repositories in worker processes: both must give exactly the rows of a plain full load."""

from __future__ import annotations

import os
from collections import Counter

import pytest

import sources.ecr as ecr_module
from emulators.inventory import Inventory
from pipelines.load import run_load
from sources.errors import AuthError
from tests.ecr.conftest import ecr_registry
from tests.ecr.test_source import assert_matches_inventory
from tests.support import (
    change_inventory,
    current_tags,
    expected_tags,
    force_worker_processes,
    load_snapshot,
    new_pipeline,
    query,
    tag_history,
)


def load(pipeline, **options):
    counter = Counter()
    run_load(pipeline, ["ecr"], source_options={"ecr": {"request_counter": counter, **options}})
    return counter


def snapshot(pipeline):
    return load_snapshot(
        pipeline,
        "ecr",
        repositories="SELECT registry, repository, image_count, created_at FROM repositories",
    )


def rows_loaded(pipeline, table):
    return pipeline.last_trace.last_normalize_info.row_counts.get(table, 0)


@pytest.fixture
def in_processes(monkeypatch):
    force_worker_processes(monkeypatch, ecr_module)


def test_worker_processes_load_exactly_what_one_process_loads(tmp_path, ecr_env, in_processes):
    inventory = Inventory(seed=31, registries=("us-east-1", "eu-west-1"), repositories=10, images=400)
    emulator = ecr_env(inventory)
    pooled, single = new_pipeline(tmp_path / "pooled"), new_pipeline(tmp_path / "single")
    counter = load(pooled, processes=2)
    load(single, processes=1)
    assert_matches_inventory(pooled, inventory)
    assert snapshot(pooled) == snapshot(single)
    # the workers' calls are counted in the caller's counter
    assert counter["ListImages"] == 10 and counter["DescribeImages"] == emulator.counters["DescribeImages"] / 2

    change_inventory(inventory, emulator)
    load(pooled, processes=2)
    load(single, processes=1)
    assert_matches_inventory(pooled, inventory)
    assert snapshot(pooled) == snapshot(single)


def test_pages_of_repositories_are_read_by_one_set_of_workers_within_the_concurrency(tmp_path, ecr_env, in_processes, monkeypatch):
    """Several DescribeRepositories pages, rows yielded after every task: the pages are read one
    after another by the same workers. (An item per page let dlt read the pages' transformer
    calls round robin, each page with its own workers: at 600,000 images 14 processes, 1.7 GB.)"""
    import sources.ecr.helpers as ecr_helpers
    from emulators.base import Faults

    monkeypatch.setattr(ecr_helpers, "MAX_RESULTS", 10)
    monkeypatch.setattr(ecr_module, "EMIT_ROWS", 1)
    inventory = Inventory(seed=35, registries=("us-east-1",), repositories=40, images=200)
    emulator = ecr_env(inventory, Faults(latency_ms=100))
    pipeline = new_pipeline(tmp_path)
    load(pipeline, processes=2, concurrency=4)
    assert_matches_inventory(pipeline, inventory)
    assert emulator.counters["DescribeRepositories"] == 4
    # 2 workers x 2 threads, and the extract thread listing the next page meanwhile
    assert 2 <= emulator.peak_in_flight <= 4 + 1


def test_the_next_page_of_repositories_is_listed_while_this_page_is_read(tmp_path, ecr_env, monkeypatch):
    """One call in flight, the first ListImages held: DescribeRepositories' next page is asked
    for meanwhile (the old code listed it only after the page's last repository was read, so
    the readers waited for each page)."""
    import threading
    import time

    import sources.ecr.helpers as ecr_helpers

    monkeypatch.setattr(ecr_helpers, "MAX_RESULTS", 5)
    inventory = Inventory(seed=38, registries=("us-east-1",), repositories=20, images=80)
    emulator = ecr_env(inventory)
    hold = emulator.hold("ListImages", nth=1)
    pipeline = new_pipeline(tmp_path)
    failures = []

    def run():
        try:
            load(pipeline, processes=1, concurrency=1)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            failures.append(exc)

    loader = threading.Thread(target=run)
    loader.start()
    try:
        assert hold.reached.wait(60)
        deadline = time.monotonic() + 10
        while emulator.counters["DescribeRepositories"] < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        listed_while_held = emulator.counters["DescribeRepositories"]
    finally:
        hold.release()
        loader.join(120)
    assert not failures
    assert listed_while_held >= 2
    assert emulator.counters["DescribeRepositories"] == 4
    assert_matches_inventory(pipeline, inventory)


def test_a_failure_in_a_worker_reaches_the_caller_as_our_error(tmp_path, ecr_env, in_processes):
    inventory = Inventory(seed=32, registries=("us-east-1",), repositories=6, images=60)
    emulator = ecr_env(inventory)

    def refuse(request, response):
        from emulators.ecr import AwsError

        return emulator._error(AwsError(400, "AccessDeniedException", "not authorized to perform: ecr:ListImages"))

    emulator.corrupt("ListImages", refuse)
    pipeline = new_pipeline(tmp_path)
    with pytest.raises(Exception) as caught:
        load(pipeline, processes=2)
    error = caught.value
    while not isinstance(error, AuthError) and error.__cause__ is not None:
        error = error.__cause__  # dlt wraps what a resource raised
    assert isinstance(error, AuthError)
    assert "ListImages" in str(error) and "us-east-1" in str(error) and "ecr:ListImages" in str(error)


def test_unchanged_repositories_give_no_rows_and_changed_ones_are_reloaded(tmp_path, ecr_env):
    inventory = Inventory(seed=33, registries=("us-east-1",), repositories=6, images=240)
    emulator = ecr_env(inventory)
    pipeline = new_pipeline(tmp_path)
    load(pipeline)

    emulator.reset_counters()
    load(pipeline)  # nothing changed
    assert rows_loaded(pipeline, "tags") == 0 and rows_loaded(pipeline, "repositories") == 0
    assert emulator.counters["ListImages"] == 6 and emulator.counters["DescribeImages"] == 0

    (repo, tag, old, new), = inventory.move_tags(1)
    emulator.inventory_changed()
    load(pipeline)
    # one repository re-read: its tags and one scope marker, nothing of the other five
    assert rows_loaded(pipeline, "tags") == len(repo.tags) + 1
    assert rows_loaded(pipeline, "repositories") == 1
    assert rows_loaded(pipeline, "images") == 0
    assert_matches_inventory(pipeline, inventory)
    assert tag_history(pipeline, "ecr")[(ecr_registry(repo.registry), repo.name, tag)] == [(old, False), (new, True)]


def test_a_vanished_repository_has_its_tags_retired(tmp_path, ecr_env):
    inventory = Inventory(seed=34, registries=("us-east-1",), repositories=5, images=150)
    emulator = ecr_env(inventory)
    pipeline = new_pipeline(tmp_path)
    load(pipeline)
    gone = sorted(inventory.registries["us-east-1"])[0]
    inventory.registries["us-east-1"].pop(gone)
    emulator.inventory_changed()
    load(pipeline)
    open_rows = dict(query(pipeline, "SELECT repository, count(*) FROM tags WHERE valid_to IS NULL GROUP BY ALL"))
    assert gone not in open_rows
    assert current_tags(pipeline, "ecr") == expected_tags(inventory, ecr_registry)
    # its fingerprint is forgotten with it: the next run is a no-op again
    load(pipeline)
    assert rows_loaded(pipeline, "tags") == 0


def test_a_replaced_destination_is_loaded_in_full_even_though_state_remembers(tmp_path, ecr_env):
    """The fingerprints live in dlt's local state too: a destination emptied or replaced behind
    its back must not be taken for 'nothing changed'."""
    inventory = Inventory(seed=35, registries=("us-east-1",), repositories=4, images=120)
    ecr_env(inventory)
    pipeline = new_pipeline(tmp_path)
    load(pipeline)
    os.remove(tmp_path / "registry_etl.duckdb")
    load(pipeline)
    assert_matches_inventory(pipeline, inventory)


def _alive() -> dict:
    """pid -> parent pid of every live (not zombie) process."""
    found = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                found[int(name)] = int(fields[1])
    return found


def _descendants(root: int) -> list:
    parents = _alive()
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        for child in [c for c, parent in parents.items() if parent == pid]:
            found.append(child)
            todo.append(child)
    return found


def test_worker_processes_leave_with_a_killed_load(tmp_path, ecr_env):
    """SIGKILL of the loading process must not leave its workers (and the forkserver) behind,
    blocked on their task queue forever. 70 repositories: worker processes from 64 a page."""
    import signal
    import subprocess
    import sys
    import time

    inventory = Inventory(seed=36, registries=("us-east-1",), repositories=70, images=280)
    emulator = ecr_env(inventory)
    hold = emulator.hold("DescribeImages", nth=3)  # a worker is in the middle of a call
    process = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "load", "ecr", "--quiet", "--duckdb", str(tmp_path / "x.duckdb"),
         "--pipelines-dir", str(tmp_path / "pipelines")],
        env={**os.environ, "SOURCES__ECR__PROCESSES": "2"},
    )
    try:
        assert hold.reached.wait(120)
        workers = _descendants(process.pid)
        assert len(workers) >= 3  # the forkserver and its two workers
        process.send_signal(signal.SIGKILL)
        process.wait()
    finally:
        emulator.clear_hooks()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and set(workers) & set(_alive()):
        time.sleep(0.2)
    assert not set(workers) & set(_alive())


def test_the_forkserver_starts_before_the_first_page_of_repositories_is_answered(tmp_path, ecr_env):
    """The workers' forkserver imports dlt and boto3 (~0.7 s of CPU): started with the listing,
    not after its first page, the import overlaps with it (a no-op rerun of 2,000 repositories
    waited for it before its first ListImages)."""
    import subprocess
    import sys
    import time

    inventory = Inventory(seed=39, registries=("us-east-1",), repositories=70, images=140)
    emulator = ecr_env(inventory)
    hold = emulator.hold("DescribeRepositories", nth=1)
    process = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "load", "ecr", "--quiet", "--duckdb", str(tmp_path / "x.duckdb"),
         "--pipelines-dir", str(tmp_path / "pipelines")],
        env={**os.environ, "SOURCES__ECR__PROCESSES": "2"},
    )
    forkservers = []
    try:
        assert hold.reached.wait(120)
        deadline = time.monotonic() + 20
        while not forkservers and time.monotonic() < deadline:
            forkservers = [pid for pid in _descendants(process.pid) if "forkserver" in _command_line(pid)]
            time.sleep(0.05)
    finally:
        hold.release()
        assert process.wait(180) == 0
    assert forkservers, "no forkserver while the first DescribeRepositories page was held"
    assert_matches_inventory(new_pipeline(tmp_path, "x.duckdb"), inventory)


@pytest.mark.parametrize("repositories, started_on_rerun", [(10, False), (70, True)])
def test_a_rerun_starts_the_forkserver_early_only_if_the_registry_had_many_repositories(tmp_path, ecr_env, monkeypatch, repositories, started_on_rerun):
    """Worker processes read a page of 64 repositories or more: a rerun of a smaller registry
    (the last load's listing says so) does not start their forkserver for nothing."""
    inventory = Inventory(seed=40, registries=("us-east-1",), repositories=repositories, images=2 * repositories)
    ecr_env(inventory)
    started = []
    start = ecr_module.start_worker_server
    monkeypatch.setattr(ecr_module, "start_worker_server", lambda preload: started.append(preload) or start(preload))
    pipeline = new_pipeline(tmp_path)
    load(pipeline, processes=2)
    assert len(started) == 1  # a first load knows nothing of the registry's size
    load(pipeline, processes=2)
    assert len(started) == (2 if started_on_rerun else 1)
    assert_matches_inventory(pipeline, inventory)


def _command_line(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def test_retries_and_calls_in_worker_processes_are_counted_in_the_summary(tmp_path, ecr_env, in_processes):
    from emulators.base import Faults

    inventory = Inventory(seed=37, registries=("us-east-1",), repositories=6, images=120)
    emulator = ecr_env(inventory, Faults(throttle_every=4))
    summary = run_load(new_pipeline(tmp_path), ["ecr"], source_options={"ecr": {"processes": 2}})
    assert emulator.faults_injected["throttle"] > 0
    assert summary.retries == emulator.faults_injected["throttle"]
    assert sum(summary.requests.values()) == sum(emulator.counters.values())
    assert_matches_inventory(new_pipeline(tmp_path), inventory)
