"""Crash safety: a real `python -m pipelines.cli load` subprocess killed with SIGKILL at a known
point (mid-extract, after extract, mid-normalize, mid-load, mid-merge, before the package is
marked loaded, after the load), then one ordinary rerun: the data equals a clean run's, with
no duplicates, no gaps and the tag history intact.

The points are exact, not timed: mid-extract the emulator holds a detail call until the test
has killed the client; the other points come from `killhook/sitecustomize.py`, which stops the
subprocess inside dlt's step and writes a marker the test waits for.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.reliability.cases import available, case_ids
from tests.reliability.support import FIGURES, ROOT, cli_env, db_path, diff, duplicates, load, serving, snapshot

CASES = available()
HOOK_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "killhook")
POINTS = ["extract_http", "extract_commit", "before_normalize", "normalize_commit", "load_job", "mid_merge",
          "complete_package", "after_load"]
_reference = {}


def mutate(inventory):
    inventory.move_tags(3)
    inventory.delete_tags(2)
    inventory.push_images(4)


def reference(tmp_path_factory, case):
    """Clean run, registry changes, clean run: the snapshot every crashed run must reach, and
    a copy of the destination and pipeline folder after the first run (each test's start)."""
    if case.provider not in _reference:
        tmp = tmp_path_factory.mktemp(f"reference-{case.provider}")
        inventory = case.inventory(seed=31, repositories=4, images=30)
        with serving(case, inventory):
            load(tmp / "run", case)
            shutil.copytree(tmp / "run", tmp / "baseline")
            mutate(inventory)  # deterministic: the same changes as every test makes
            pipeline, _ = load(tmp / "run", case)
        _reference[case.provider] = (snapshot(db_path(pipeline), case.volatile), tmp / "baseline")
    return _reference[case.provider]


def wait_for(predicate, proc, what, timeout=90.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the load ended (exit {proc.returncode}) before {what}:\n{err[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.mark.parametrize("case", [
    pytest.param(c, id=c.provider, marks=[pytest.mark.xfail(strict=False, reason=c.known_bugs["crash"])] if "crash" in c.known_bugs else [])
    for c in CASES])
@pytest.mark.parametrize("point", [
    pytest.param(point, marks=pytest.mark.xfail(strict=True, reason=(
        "dlt resumes a package killed after a copy job inserted its rows but before the job was "
        "marked done: the job runs again and the scd2 staging table holds the tag rows twice, "
        "so the history gets duplicate open rows. Fix belongs in pipelines/load.py "
        "(docs/reliability.md, 'Killed during load')"))) if point == "load_job" else point
    for point in POINTS])
def test_kill_then_rerun_gives_the_clean_data(tmp_path, tmp_path_factory, case, point):
    expected, baseline = reference(tmp_path_factory, case)
    inventory = case.inventory(seed=31, repositories=4, images=30)
    shutil.copytree(baseline, tmp_path, dirs_exist_ok=True)  # a first load: the history the crash must not damage
    path = str(tmp_path / "registry_etl.duckdb")
    with serving(case, inventory) as (emulator, env):
        mutate(inventory)

        marker = tmp_path / "paused"
        run_env = dict(env, RELIABILITY_PAUSE_FILE=str(marker))
        hold = None
        if point == "extract_http":
            # some repositories' details are read, the client waits on the next one
            hold = emulator.hold(case.detail_operation, nth=2)
        else:
            run_env["RELIABILITY_PAUSE_AT"] = point
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipelines.cli", "load", case.provider, "--quiet",
             "--duckdb", path, "--pipelines-dir", str(tmp_path / "pipelines")],
            cwd=ROOT, env=cli_env(run_env, extra_path=HOOK_DIR), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            if hold is not None:
                wait_for(hold.reached.is_set, proc, f"the held {case.detail_operation} call")
            else:
                wait_for(marker.exists, proc, f"pause point {point}")
                assert marker.read_text() == point
            os.kill(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=30)
        finally:
            if hold is not None:
                hold.release()
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == -signal.SIGKILL

        pipeline, _ = load(tmp_path, case)  # one ordinary rerun, as the next scheduled run
    path = db_path(pipeline)
    FIGURES["processes killed (SIGKILL)"] += 1
    assert diff(expected, snapshot(path, case.volatile)) == []
    assert all(n == 0 for n in duplicates(path).values()), duplicates(path)
    FIGURES["killed runs recovered exactly by one rerun"] += 1
