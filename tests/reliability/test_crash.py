"""Crash safety: a real `python -m pipelines.cli load` subprocess killed with SIGKILL at a known
point (mid-extract, after extract, mid-normalize, mid-load, mid-merge, before the package is
marked loaded, after the load), the registry changed again, then ONE ordinary rerun (the CLI,
as the next scheduled run): the data equals a clean history's, with no duplicates, no gaps and
the tag history intact, and the rerun is recorded in `load_runs`.

The points are exact, not timed: mid-extract the emulator holds a detail call until the test
has killed the client; the other points come from `killhook/sitecustomize.py`, which stops the
subprocess inside dlt's step and writes a marker the test waits for.

Every test runs against one emulator instance from its first load to its rerun, as a real
registry would be: the NCP and SWR emulators move a repository's update stamp only when they
see its content change between two answers, so a first load served by another instance would
hide the change (that was the "3 pushed images missing" of the first version of this test).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import duckdb
import pytest

from pipelines.exits import EXIT_PARTIAL
from tests.reliability.cases import CASES as ALL_CASES
from tests.reliability.cases import SourceCase, available
from tests.reliability.support import FIGURES, ROOT, cli, cli_env, diff, duplicates, load, serving, snapshot

CASES = available()
HOOK_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "killhook")
DB = "registry_etl.duckdb"
RUN_LOG = "load_runs"  # written by the CLI's rerun only: compared on its own
# every point, and what the rerun must do with what the killed run left behind
POINTS = {
    "extract_http": None,  # nothing committed: nothing pending
    "extract_commit": None,
    "before_normalize": "finished",  # a committed package, nothing of it loaded: dlt resumes it exactly
    "normalize_commit": "finished",
    "load_job": "discarded",  # a job that may have written without a record: discarded, extracted anew
    "mid_merge": "finished",  # a merge job rolled back: runs again, same result
    "merge_done": "finished",  # a merge job committed without a record: runs again, same result
    "complete_package": "finished",  # every job recorded: only the package's own completion is missing
    "after_load": None,  # landed in full
}
MIN_POINTS = 5  # issue 8: at least five kill points per source family
PARALLEL_POINTS = {"mid_merge", "merge_done"}  # other load jobs may be in flight at these
_reference = {}


def first_changes(inventory):
    """Between the first load and the killed run."""
    inventory.move_tags(3)
    inventory.delete_tags(2)
    inventory.push_images(4)


def later_changes(inventory):
    """Between the kill and the rerun: a rerun that only finished the killed run's package
    would miss these. Pushes only, so a clean history that saw the killed run's registry and
    one that did not end equal (a tag moved twice would otherwise have one version more or
    less, depending on whether the killed run landed)."""
    inventory.push_images(3)


def stamp_changes(emulator, inventory):
    """A registry stamps a change when it is made; the SWR emulator stamps it when it next
    answers about it (a repository's `updated_at`, a moved tag's `updated`), so a change the
    killed run never asked about would get a later stamp than in the clean history. Ask now,
    right after each change, in both histories (emulators without such stamps: nothing to do)."""
    for repo in inventory.repositories():
        if hasattr(emulator, "repository_updated_ns"):
            emulator.repository_updated_ns(repo)
        if hasattr(emulator, "tag_updated_ns"):
            for tag in sorted(repo.tags):
                emulator.tag_updated_ns(repo, tag)


# Every point for ECR, the reference family; for the others five that span extract,
# normalize and load (a kill test is three real CLI runs: all 9 x 5 take ~25 min on 2 cores).
# RELIABILITY_ALL_KILL_POINTS=1 runs every point for every source.
CORE_POINTS = ("extract_http", "extract_commit", "before_normalize", "load_job", "mid_merge", "after_load")
EVERY_POINT_FOR = ("ecr",)


def points_for(case: SourceCase):
    """The kill points run for a source: mid-extract only where the emulator has a detail call
    to hold; all of them for ECR (or with RELIABILITY_ALL_KILL_POINTS=1), else the core ones."""
    every = case.provider in EVERY_POINT_FOR or os.environ.get("RELIABILITY_ALL_KILL_POINTS") == "1"
    return [point for point in POINTS
            if (point != "extract_http" or case.detail_operation) and (every or point in CORE_POINTS)]


def reference(tmp_path_factory, case):
    """First load, changes, load, changes, load, all clean, against one emulator instance:
    the snapshot every crashed run must reach."""
    if case.provider not in _reference:
        tmp = tmp_path_factory.mktemp(f"reference-{case.provider}")
        inventory = case.inventory(seed=31, repositories=4, images=30)
        with serving(case, inventory) as (emulator, _):
            load(tmp, case)
            first_changes(inventory)
            stamp_changes(emulator, inventory)
            load(tmp, case)
            later_changes(inventory)
            stamp_changes(emulator, inventory)
            load(tmp, case)
        _reference[case.provider] = snapshot(str(tmp / DB), case.volatile)
    return _reference[case.provider]


def wait_for(predicate, proc, what, timeout=90.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the load ended (exit {proc.returncode}) before {what}:\n{err[-3000:]}")
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def kill_at(point, case, emulator, env, tmp_path, **hook):
    """Start a CLI load and SIGKILL it at `point` (`hook`: more RELIABILITY_* settings)."""
    marker = tmp_path / "paused"
    run_env = dict(env, RELIABILITY_PAUSE_FILE=str(marker), **hook)
    hold = None
    if point == "extract_http":
        # some repositories' details are read, the client waits on the next one
        hold = emulator.hold(case.detail_operation, nth=2)
    else:
        run_env["RELIABILITY_PAUSE_AT"] = point
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "load", case.provider, "--quiet",
         "--duckdb", str(tmp_path / DB), "--pipelines-dir", str(tmp_path / "pipelines")],
        cwd=ROOT, env=cli_env(run_env, extra_path=HOOK_DIR), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # its own process group: the load and its worker processes
    )
    try:
        if hold is not None:
            wait_for(hold.reached.is_set, proc, f"the held {case.detail_operation} call")
        else:
            wait_for(marker.exists, proc, f"pause point {point}")
            assert marker.read_text() == point
        # the whole load dies, as when a machine or a scheduler's cgroup is killed: the ECR
        # source's forkserver workers would otherwise live on, holding the output pipes
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        if hold is not None:
            hold.release()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    FIGURES["processes killed (SIGKILL)"] += 1
    FIGURES[f"kill points run, {case.provider}"] += 1


def rows_lost_and_extra(expected, got):
    lost = extra = 0
    for table in set(expected) | set(got):
        a = Counter(expected.get(table, ((), []))[1])
        b = Counter(got.get(table, ((), []))[1])
        lost += sum((a - b).values())
        extra += sum((b - a).values())
    return lost, extra


def params():
    for case in CASES:
        marks = [pytest.mark.xfail(strict=False, reason=case.known_bugs["crash"])] if "crash" in case.known_bugs else []
        for point in points_for(case):
            yield pytest.param(case, point, id=f"{point}-{case.provider}", marks=marks)


def test_every_source_family_has_enough_kill_points():
    """Issue 8's acceptance, for every entry of the case table (sources not yet in the catalog too)."""
    for case in ALL_CASES:
        assert len(points_for(case)) >= MIN_POINTS, case.provider


@pytest.mark.parametrize("case, point", list(params()))
def test_kill_then_rerun_gives_the_clean_data(tmp_path, tmp_path_factory, case, point):
    expected = reference(tmp_path_factory, case)
    inventory = case.inventory(seed=31, repositories=4, images=30)
    with serving(case, inventory) as (emulator, env):
        load(tmp_path, case)  # the first load: the history the crash must not damage
        first_changes(inventory)
        stamp_changes(emulator, inventory)
        kill_at(point, case, emulator, env, tmp_path)
        later_changes(inventory)
        stamp_changes(emulator, inventory)
        # one ordinary rerun, as the next scheduled run
        rerun = cli("load", case.provider, "--quiet", "--duckdb", str(tmp_path / DB),
                    "--pipelines-dir", str(tmp_path / "pipelines"), env=env)
    assert rerun.returncode == 0, rerun.stderr[-3000:]

    path = str(tmp_path / DB)
    got = snapshot(path, case.volatile)
    got.pop(RUN_LOG, None)
    lost, extra = rows_lost_and_extra(expected, got)
    dups = duplicates(path)
    FIGURES["crash: rows lost"] += lost
    FIGURES["crash: rows extra"] += extra
    FIGURES["crash: duplicate keys"] += sum(dups.values())
    assert diff(expected, got) == []
    assert all(n == 0 for n in dups.values()), dups

    # what the rerun did with the killed run's package, in its summary and its run log row
    recovered = [line.strip() for line in rerun.stdout.splitlines() if line.strip().startswith("recovered:")]
    action = POINTS[point]
    if action is None:
        assert recovered == [], rerun.stdout
    else:
        # load jobs run in parallel: killed mid-merge, another table's copy job may be cut too,
        # and then the package is discarded rather than finished (the data is the same)
        allowed = {action, "discarded"} if point in PARALLEL_POINTS else {action}
        assert len(recovered) == 1 and any(recovered[0].startswith(f"recovered: {a} load ") for a in allowed), rerun.stdout
        action = recovered[0].split()[1]  # what the rerun did: the loads below follow from it
    with duckdb.connect(path, read_only=True) as con:
        runs = con.execute(f"SELECT outcome, load_id, rows_total FROM registry.{RUN_LOG}").fetchall()
        loads = [lid for (lid,) in con.execute("SELECT load_id FROM registry._dlt_loads WHERE status = 0 AND schema_name <> ? ORDER BY load_id", [RUN_LOG]).fetchall()]
    assert len(runs) == 1, runs  # the killed run never got to write its row
    outcome, load_id, rows_total = runs[0]
    assert outcome == "ok" and rows_total > 0
    assert load_id == loads[-1]  # the rerun's own extraction, loaded after whatever it finished
    if action == "finished" or point == "after_load":
        assert len(loads) == 3, loads  # first load, the killed run's package, the rerun's
    else:
        assert len(loads) == 2, loads  # the killed run left nothing, or its package was discarded
    FIGURES["killed runs recovered exactly by one rerun"] += 1


def reference_with(case, tmp, install):
    """Like `reference`, with `install(emulator, inventory)` bending the answers of every run."""
    inventory = case.inventory(seed=31, repositories=4, images=30)
    with serving(case, inventory) as (emulator, _):
        install(emulator, inventory)
        load(tmp, case)
        first_changes(inventory)
        stamp_changes(emulator, inventory)
        load(tmp, case)
        later_changes(inventory)
        stamp_changes(emulator, inventory)
        load(tmp, case)
    return snapshot(str(tmp / DB), case.volatile)


def unreadable_repository_time(emulator, inventory):
    """Every DescribeRepositories answer gives every repository a time ECR never sends: each run
    loads the repositories it reads without it and appends one `load_problems` row for each
    (ECR reads only repositories whose listing changed, so the count per run varies)."""

    def edit(request, response):
        for entry in (response.body or {}).get("repositories", []):
            entry["createdAt"] = "last week"

    emulator.corrupt("DescribeRepositories", edit)


@pytest.mark.skipif("ecr" not in {c.provider for c in CASES}, reason="the ECR source is not in the catalog")
def test_kill_after_a_problem_row_was_inserted(tmp_path, tmp_path_factory):
    """`load_problems` is append-only, loaded straight into its table (no staging): killed after
    its rows were inserted, before the job was marked done. The rerun discards the package (it
    would insert the rows again), the rows inserted stay: the record of a run that saw the
    problem, none twice. Every other table equals the clean history; `load_problems` is a log
    of what each run read, so its rows are checked for duplicates, not against that history."""
    case = next(c for c in CASES if c.provider == "ecr")
    expected = reference_with(case, tmp_path_factory.mktemp("reference-problems"), unreadable_repository_time)
    expected.pop("load_problems", None)
    inventory = case.inventory(seed=31, repositories=4, images=30)
    with serving(case, inventory) as (emulator, env):
        unreadable_repository_time(emulator, inventory)
        load(tmp_path, case)
        first_changes(inventory)
        kill_at("load_job", case, emulator, env, tmp_path, RELIABILITY_PAUSE_TABLE="load_problems")
        later_changes(inventory)
        rerun = cli("load", case.provider, "--quiet", "--duckdb", str(tmp_path / DB),
                    "--pipelines-dir", str(tmp_path / "pipelines"), env=env)
    # EXIT_PARTIAL: loaded, with a record loaded only in part
    assert rerun.returncode == EXIT_PARTIAL and "recovered: discarded load " in rerun.stdout, rerun.stdout + rerun.stderr[-2000:]
    path = str(tmp_path / DB)
    got = snapshot(path, case.volatile)
    got.pop(RUN_LOG, None)
    got.pop("load_problems", None)
    assert diff(expected, got) == []
    with duckdb.connect(path, read_only=True) as con:
        rows, distinct = con.execute(
            "SELECT count(*), count(DISTINCT (provider, registry, repository, call, object, reason, seen_at))"
            " FROM registry.load_problems").fetchone()
    assert rows == distinct and rows > len(list(inventory.repositories()))  # the first load's and later ones, none twice
    FIGURES["killed runs recovered exactly by one rerun"] += 1


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.provider)
def test_kill_with_images_merged_and_layers_not(tmp_path, tmp_path_factory, case):
    """The package is killed after the merge of `images` committed and while the copy job of
    `images__layers` had no recorded outcome: the rerun discards the package, but the images it
    merged are in the destination, and the sources fetch details only for digests not in
    `images`. The layers of those images must still land (no gap)."""
    expected = reference(tmp_path_factory, case)
    if not expected.get("images__layers", ((), []))[1]:
        pytest.skip(f"{case.provider} loads no layers")
    inventory = case.inventory(seed=31, repositories=4, images=30)
    with serving(case, inventory) as (emulator, env):
        load(tmp_path, case)
        first_changes(inventory)
        stamp_changes(emulator, inventory)
        kill_at("load_job", case, emulator, env, tmp_path,
                RELIABILITY_PAUSE_TABLE="images__layers", RELIABILITY_PAUSE_AFTER_MERGE="images")
        later_changes(inventory)
        stamp_changes(emulator, inventory)
        rerun = cli("load", case.provider, "--quiet", "--duckdb", str(tmp_path / DB),
                    "--pipelines-dir", str(tmp_path / "pipelines"), env=env)
    assert rerun.returncode == 0 and "recovered: discarded load " in rerun.stdout, rerun.stdout + rerun.stderr[-2000:]
    path = str(tmp_path / DB)
    got = snapshot(path, case.volatile)
    got.pop(RUN_LOG, None)
    lost, extra = rows_lost_and_extra(expected, got)
    FIGURES["crash: rows lost"] += lost
    FIGURES["crash: rows extra"] += extra
    assert diff(expected, got) == []
    assert all(n == 0 for n in duplicates(path).values())
    FIGURES["killed runs recovered exactly by one rerun"] += 1
