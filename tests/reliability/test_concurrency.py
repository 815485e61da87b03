"""Concurrent runs on one DuckDB file, with real processes.

- Two `registry-etl load` processes that ask for the load lock at the same moment (a barrier in
  `concurhook/sitecustomize.py` lines them up): exactly one loads, the other exits 75 at once,
  without a single registry call; the data equal one clean load.
- A notebook (another process with `duckdb.connect(path, read_only=True)`) holding the file
  when a load starts, or opening it while the load reads the registries: the load exits 75 with
  one paragraph naming the file and the notebook's PID, no traceback; the file is unchanged;
  the next run after the notebook closed ends with exactly the data of a clean run.
- `--wait SECONDS`: waits for the running load, or for the notebook, then loads; gives up with 75
  when the time is over (one log line says what it waits for).

Ordering is made by the emulator (`hold()`: a load provably in flight) and by log lines the
waiting process writes; no sleep decides an outcome.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import duckdb
import pytest

from pipelines.exits import EXIT_LOCKED, EXIT_OK
from tests.reliability.cases import available
from tests.reliability.support import FIGURES, ROOT, cli, cli_env, diff, duplicates, load, serving, snapshot

CASE = next((case for case in available() if case.provider == "ecr"), None)
pytestmark = pytest.mark.skipif(CASE is None, reason="the ECR source is not in the catalog")
HOOK_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "concurhook")
BUSY = "is open in another process"


def inventory():
    return CASE.inventory(seed=17, repositories=3, images=12)


def mutate(inventory):
    inventory.move_tags(2)
    inventory.delete_tags(1)
    inventory.push_images(2)


def where(tmp_path, pipelines="pipelines"):
    return ("--duckdb", str(tmp_path / "registry_etl.duckdb"), "--pipelines-dir", str(tmp_path / pipelines), "--quiet")


def spawn(*args, env, hook=False):
    return subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", *args], cwd=ROOT, text=True,
        env=cli_env(env, extra_path=HOOK_DIR if hook else None), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


@contextmanager
def notebook(path):
    """Another process with the DuckDB file open read-only, as a notebook holds it, until the
    block ends (then it closes its connection and exits)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys\n"
         f"con = duckdb.connect({str(path)!r}, read_only=True)\n"
         "con.execute('SELECT count(*) FROM registry.images').fetchone()\n"
         "print('open', flush=True)\nsys.stdin.read()\ncon.close()\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.strip() == "open", f"the notebook could not open the file: {proc.stderr.read()[-2000:]}"
        yield proc
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)


def wait_for_line(proc, text, timeout=120.0):
    """Read the process's stderr until a line contains `text`; returns what was read. The
    reading runs in a thread, so a line that never comes fails the test after `timeout`."""
    seen, found = [], threading.Event()

    def read():
        for line in proc.stderr:
            seen.append(line)
            if text in line:
                found.set()
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    if not found.is_set():
        ended = proc.poll()
        proc.kill()
        pytest.fail(f"no {text!r} (the process {'ended with ' + str(ended) if ended is not None else 'still ran'}):\n"
                    f"{''.join(seen)[-3000:]}")
    return "".join(seen)


def reference(tmp_path, emulator, changed):
    """A clean in-process load (twice, the registry changed in between, when `changed`) into its
    own file: the snapshot the runs under test must end with."""
    load(tmp_path / "clean", CASE)
    if changed:
        mutate(emulator.inventory)
        load(tmp_path / "clean", CASE)
    return snapshot(str(tmp_path / "clean" / "registry_etl.duckdb"), CASE.volatile)


def assert_loaded_exactly(path, expected):
    """The data equal the clean run's (the CLI's run log, which the in-process reference does not
    write, is checked on its own)."""
    got = snapshot(str(path), CASE.volatile)
    got.pop("load_runs", None)
    assert diff(expected, got) == []
    assert all(n == 0 for n in duplicates(str(path)).values()), duplicates(str(path))


def run_log(path):
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute("SELECT outcome, exit_code FROM registry.load_runs ORDER BY started_at").fetchall()


def test_two_loads_started_at_the_same_moment_exactly_one_loads(tmp_path):
    with serving(CASE, inventory()) as (emulator, env):
        emulator.reset_counters()
        expected = reference(tmp_path, emulator, changed=False)
        one_load_calls = dict(emulator.counters)
        emulator.reset_counters()

        barrier = tmp_path / "barrier"
        barrier.mkdir()
        hold = emulator.hold("DescribeRepositories")  # the winner waits here until the loser has ended
        run_env = dict(env, CONCURRENCY_BARRIER_DIR=str(barrier), CONCURRENCY_BARRIER_PARTIES="2")
        procs = [spawn("load", "ecr", *where(tmp_path, f"p{i}"), env=run_env, hook=True) for i in range(2)]
        try:
            deadline = time.monotonic() + 120
            while all(p.poll() is None for p in procs) and time.monotonic() < deadline:
                time.sleep(0.02)
            ended = [p for p in procs if p.poll() is not None]
            assert len(ended) == 1, "one load must stop at once while the other holds the lock"
            loser, winner = ended[0], next(p for p in procs if p is not ended[0])
            out, err = loser.communicate(timeout=30)
            assert loser.returncode == EXIT_LOCKED, err[-3000:]
            assert "another load of this dataset is running" in err and f"pid {winner.pid}" in err
            assert "Traceback" not in err and out == ""
            assert hold.reached.wait(120), "the load holding the lock never reached the registry"
            assert winner.poll() is None
        finally:
            hold.release()
            outputs = {proc.pid: proc.communicate(timeout=180) for proc in procs if proc.returncode is None}
        assert winner.returncode == EXIT_OK, outputs[winner.pid][1][-3000:]
        assert sorted(os.listdir(barrier)) == sorted(f"arrived.{p.pid}" for p in procs)  # both met at the lock
        assert dict(emulator.counters) == one_load_calls, "the stopped load made registry calls"
    assert_loaded_exactly(tmp_path / "registry_etl.duckdb", expected)
    assert run_log(tmp_path / "registry_etl.duckdb") == [("ok", 0)]  # a refused run is not recorded
    FIGURES["concurrent loads started together, one refused with 75"] += 1


def test_a_notebook_holding_the_file_stops_the_load_with_75_and_nothing_is_lost(tmp_path):
    db = tmp_path / "registry_etl.duckdb"
    with serving(CASE, inventory()) as (emulator, env):
        first = cli("load", "ecr", *where(tmp_path), env=env)
        assert first.returncode == EXIT_OK, first.stderr[-3000:]
        expected = reference(tmp_path, emulator, changed=True)
        before = snapshot(str(db), CASE.volatile)
        emulator.reset_counters()
        with notebook(db) as reader:
            refused = cli("load", "ecr", *where(tmp_path), env=env)
            # JSON logs, and a --wait that runs out while the notebook stays open
            as_json = cli("load", "ecr", *where(tmp_path), "--log-format", "json", "--wait", "0.5", env=env)
            assert diff(before, snapshot(str(db), CASE.volatile)) == []  # nothing half-written
        assert dict(emulator.counters) == {}, "the refused load called the registry"

        assert refused.returncode == EXIT_LOCKED and refused.stdout == ""
        lines = [line for line in refused.stderr.splitlines() if line.strip()]
        assert lines == [lines[0]] and lines[0].startswith("error: the DuckDB file "), refused.stderr  # one paragraph
        message = lines[0]
        assert f"{db} {BUSY} (PID {reader.pid}" in message
        assert "nothing was loaded and nothing is lost" in message
        assert "con.close()" in message and "registry-etl report" in message and "--wait" in message
        records = [json.loads(line) for line in as_json.stderr.splitlines() if line.strip()]
        events = [r for r in records if r.get("event")]  # other lines (a dlt warning) may come between
        assert as_json.returncode == EXIT_LOCKED, as_json.stderr[-3000:]
        assert [(e["event"], e.get("waiting_for")) for e in events] == [("waiting", "duckdb_file"), ("error", None)], as_json.stderr[-3000:]
        assert "waiting up to 0.5 s for it to be closed" in events[0]["message"] and events[0]["holder_pid"] == reader.pid
        assert (events[1]["kind"], events[1]["exit_code"]) == ("file_busy", EXIT_LOCKED)
        assert f"PID {reader.pid}" in events[1]["message"]

        after = cli("load", "ecr", *where(tmp_path), env=env)  # the notebook is closed now
        assert after.returncode == EXIT_OK, after.stderr[-3000:]
    assert_loaded_exactly(db, expected)
    assert run_log(db) == [("ok", 0), ("ok", 0)]
    FIGURES["loads refused by a reader holding the file, then exact"] += 1


def test_a_notebook_opening_the_file_while_the_load_reads_the_registry(tmp_path):
    """The load does not hold the file while it reads the registries; a notebook that opens it
    then makes the load step fail: 75, what was read is kept and the next run loads it."""
    db = tmp_path / "registry_etl.duckdb"
    with serving(CASE, inventory()) as (emulator, env):
        first = cli("load", "ecr", *where(tmp_path), env=env)
        assert first.returncode == EXIT_OK, first.stderr[-3000:]
        expected = reference(tmp_path, emulator, changed=True)
        before = snapshot(str(db), CASE.volatile)

        hold = emulator.hold(CASE.detail_operation)
        proc = spawn("load", "ecr", *where(tmp_path), env=env)
        try:
            assert hold.reached.wait(120), "the load never reached the registry"
            with notebook(db) as reader:  # opens: the load holds no connection while it reads
                hold.release()
                out, err = proc.communicate(timeout=180)
                assert diff(before, snapshot(str(db), CASE.volatile)) == []  # nothing half-written
        finally:
            hold.release()
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == EXIT_LOCKED, err[-3000:]
        assert "Traceback" not in err
        message = next(line for line in err.splitlines() if line.startswith("error: "))
        assert f"{db} {BUSY} (PID {reader.pid}" in message
        assert "kept in the pipeline folder and the next run loads it; nothing is lost" in message

        after = cli("load", "ecr", *where(tmp_path), env=env)
        assert after.returncode == EXIT_OK, after.stderr[-3000:]
        assert_loaded_exactly(db, expected)
        again = cli("load", "ecr", *where(tmp_path), env=env)  # the next scheduled run: still exact
        assert again.returncode == EXIT_OK, again.stderr[-3000:]
    assert_loaded_exactly(db, expected)
    FIGURES["loads refused by a reader holding the file, then exact"] += 1


def test_wait_lets_the_load_start_when_the_notebook_closes(tmp_path):
    db = tmp_path / "registry_etl.duckdb"
    with serving(CASE, inventory()) as (emulator, env):
        first = cli("load", "ecr", *where(tmp_path), env=env)
        assert first.returncode == EXIT_OK, first.stderr[-3000:]
        expected = reference(tmp_path, emulator, changed=True)
        with notebook(db) as reader:
            proc = spawn("load", "ecr", *where(tmp_path), "--wait", "300", env=env)
            try:
                logged = wait_for_line(proc, "waiting up to 300 s for it to be closed")
                assert f"(PID {reader.pid})" in logged and proc.poll() is None
            except BaseException:
                proc.kill()
                raise
        out, err = proc.communicate(timeout=180)  # the notebook closed: the load goes on
        assert proc.returncode == EXIT_OK, err[-3000:]
        assert out.startswith("ok: ecr")
    assert_loaded_exactly(db, expected)


def test_wait_lets_the_second_load_run_after_the_first(tmp_path):
    db = tmp_path / "registry_etl.duckdb"
    with serving(CASE, inventory()) as (emulator, env):
        expected = reference(tmp_path, emulator, changed=False)
        hold = emulator.hold("DescribeRepositories")
        first = spawn("load", "ecr", *where(tmp_path, "p1"), env=env)
        second = None
        try:
            assert hold.reached.wait(120), "the first load never reached the registry"
            second = spawn("load", "ecr", *where(tmp_path, "p2"), "--wait", "300", env=env)
            logged = wait_for_line(second, "waiting up to 300 s for it to end")
            assert f"pid {first.pid}" in logged and second.poll() is None
        finally:
            hold.release()
            for proc in (first, second):
                if proc is not None and proc.poll() is None:
                    proc.wait(timeout=180)
        assert first.returncode == EXIT_OK, first.stderr.read()[-3000:]
        assert second.returncode == EXIT_OK, second.stderr.read()[-3000:]
    assert_loaded_exactly(db, expected)
    assert run_log(db) == [("ok", 0), ("ok", 0)]
