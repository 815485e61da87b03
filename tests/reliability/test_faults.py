"""Transient faults change nothing: every source, with at least one call in five failing
(throttling, 5xx, dropped connections, truncated bodies), loads exactly what a fault-free run
loads; a call that keeps failing fails the run clearly, and the next run is exact."""

from __future__ import annotations

import pytest

from emulators.base import Faults, Response
from pipelines.cli import _root_cause
from sources.errors import ApiError
from tests.reliability.cases import FAULTS, available, case_ids
from tests.reliability.support import FIGURES, db_path, diff, duplicates, load, serving, snapshot

CASES = available()


def two_loads(tmp_path, case, name, faults=None, **options):
    """Load, change the registry (tags moved and deleted, images pushed), load again."""
    inventory = case.inventory(seed=21, repositories=5, images=60)
    with serving(case, inventory, faults) as (emulator, _env):
        pipeline, _ = load(tmp_path, case, name, **options)
        inventory.move_tags(4)
        inventory.delete_tags(2)
        inventory.push_images(5)
        pipeline, _ = load(tmp_path, case, name, **options)
        injected = dict(emulator.faults_injected)
        calls = sum(emulator.counters.values())
    return snapshot(db_path(pipeline), case.volatile), inventory, injected, calls, db_path(pipeline)


@pytest.mark.parametrize("case", CASES, ids=case_ids(CASES))
def test_faults_do_not_change_the_data(tmp_path, case):
    clean, inventory, _, _, _ = two_loads(tmp_path / "clean", case, "clean.duckdb")
    faulty, _, injected, calls, path = two_loads(tmp_path / "faulty", case, "faulty.duckdb", Faults(**FAULTS), **case.fault_options)
    # every kind of fault happened, and at least one call in five failed
    assert set(injected) == {"throttle", "error", "drop", "truncate"}, injected
    assert sum(injected.values()) * 5 >= calls - 5, f"only {injected} faults in {calls} calls"
    assert diff(clean, faulty) == []
    assert all(n == 0 for n in duplicates(path).values()), duplicates(path)
    # and the clean run is the inventory (not two equal wrong answers)
    images = clean["images"]
    if case.sees_every_manifest:
        assert len(images[1]) == inventory.counts()["images"]
    else:
        assert 0 < len(images[1]) <= inventory.counts()["images"]
    FIGURES["faults injected"] += sum(injected.values())
    FIGURES["calls made under faults"] += calls
    FIGURES["runs survived under faults"] += 2
    FIGURES["table comparisons equal (rows lost 0, duplicates 0)"] += 1


@pytest.mark.parametrize("case", CASES, ids=case_ids(CASES))
def test_a_call_that_keeps_failing_fails_the_run_and_the_next_run_is_exact(tmp_path, case):
    inventory = case.inventory(seed=4, repositories=4, images=30)
    with serving(case, inventory) as (emulator, _):
        reference, _ = load(tmp_path / "ref", case, "ref.duckdb")
        expected = snapshot(db_path(reference), case.volatile)

        # the per-image (or per-registry) listing/detail call fails every time from now on
        victim = case.detail_operation
        hook = emulator.corrupt(victim, lambda request, response: emulator.server_error_response(victim))
        with pytest.raises(Exception) as info:
            load(tmp_path / "run", case, "run.duckdb", **case.fault_options)
        error = _root_cause(info.value)
        assert isinstance(error, ApiError), repr(error)
        assert (case.detail_call or victim) in str(error) and case.provider in str(error)
        assert hook.applied >= 2  # retried before giving up
        emulator.clear_hooks()

        pipeline, _ = load(tmp_path / "run", case, "run.duckdb")
        assert diff(expected, snapshot(db_path(pipeline), case.volatile)) == []
    FIGURES["faults injected"] += hook.applied
    FIGURES["runs failed clearly after retries, next run exact"] += 1
