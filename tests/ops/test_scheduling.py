"""`registry-etl load` under a scheduler: the lock, exit codes, JSON logs, the run log, status."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading

import duckdb
import pytest

from emulators.ecr import EcrEmulator, demo_env
from emulators.inventory import Inventory
from pipelines import cli
from pipelines.exits import EXIT_AUTH, EXIT_LOCKED, EXIT_OK
from pipelines.lock import LoadLock, LockBusy
from tests.support import ROOT

WRONG_SECRET = "wrong-secret-for-the-run-log-4711"


class GatedEcrEmulator(EcrEmulator):
    """Holds every request until `gate` opens, and says when the first one arrived: a load
    that is provably in flight, without timing guesses."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.arrived = threading.Event()
        self.gate = threading.Event()

    def handle(self, request, operation):
        self.arrived.set()
        self.gate.wait(120)
        return super().handle(request, operation)


def spawn(*args, env):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("SOURCES__", "AWS_", "DESTINATION"))}
    full_env.update(env, PYTHONPATH=ROOT)
    return subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env, cwd=ROOT,
    )


def test_second_load_of_the_same_dataset_exits_at_once_with_the_lock_code(tmp_path):
    emulator = GatedEcrEmulator(Inventory(seed=5, registries=("us-east-1",), repositories=2, images=8)).start()
    db = tmp_path / "registry_etl.duckdb"
    args = ("load", "ecr", "--duckdb", str(db), "--quiet")
    first = spawn(*args, "--pipelines-dir", str(tmp_path / "p1"), env=demo_env(emulator))
    try:
        assert emulator.arrived.wait(120), "the first load never reached the registry"
        # the first load holds the lock while its request is held: another pipelines dir,
        # same DuckDB file = same dataset
        second = spawn(*args, "--pipelines-dir", str(tmp_path / "p2"), env=demo_env(emulator))
        out, err = second.communicate(timeout=120)
        assert second.returncode == EXIT_LOCKED, err
        assert "another load of this dataset is running" in err
        assert f"pid {first.pid}" in err
        assert first.poll() is None, "the second run must not wait for the first"
    finally:
        emulator.gate.set()
        out, err = first.communicate(timeout=180)
        emulator.stop()
    assert first.returncode == EXIT_OK, err
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM registry.images").fetchone()[0] == sum(
            len(r.images) for r in emulator.inventory.repositories()
        )
    # the lock is free again once the holder ended
    LoadLock(str(db) + ".lock").acquire().release()


def test_lock_is_exclusive_per_file_and_names_its_holder(tmp_path):
    path = str(tmp_path / "x.lock")
    with LoadLock(path):
        with pytest.raises(LockBusy) as busy:
            LoadLock(path).acquire()
        assert busy.value.holder["pid"] == os.getpid()
        LoadLock(str(tmp_path / "other.lock")).acquire().release()  # another dataset: free
    LoadLock(path).acquire().release()


@pytest.fixture
def run_cli(monkeypatch, capsys):
    """`registry-etl` in this process (faster than a subprocess), root logging restored after."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    for key in [k for k in os.environ if k.startswith(("SOURCES__", "AWS_", "DESTINATION"))]:
        monkeypatch.delenv(key)

    def run(*args, env=None):
        with monkeypatch.context() as patch:
            for key, value in (env or {}).items():
                patch.setenv(key, value)
            code = cli.main(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    yield run
    root.handlers[:], _ = saved
    root.setLevel(saved[1])


def test_status_shows_three_runs_with_their_outcome(tmp_path, run_cli):
    inventory = Inventory(seed=8, registries=("us-east-1",), repositories=2, images=10)
    with EcrEmulator(inventory) as emulator:
        env = demo_env(emulator)
        where = ("--duckdb", str(tmp_path / "registry_etl.duckdb"), "--pipelines-dir", str(tmp_path / "p"), "--quiet")
        code, out, _ = run_cli("load", "ecr", *where, env=env)
        assert code == EXIT_OK and out.startswith("ok: ecr")
        code, out, err = run_cli("load", "ecr", *where, env={**env, "AWS_SECRET_ACCESS_KEY": WRONG_SECRET})
        assert code == EXIT_AUTH and "DescribeRepositories" in err
        inventory.move_tags(2)
        code, out, _ = run_cli("load", "ecr", *where, "--full-refresh", env=env)
        assert code == EXIT_OK

    code, out, err = run_cli("status", *where[:4])
    assert code == EXIT_OK, err
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["started_at", "outcome", "exit"]
    outcomes = [line.split()[2:4] for line in lines[2:]]  # date, time, outcome, exit
    assert outcomes == [["ok", "0"], ["failed", "3"], ["ok", "0"]]
    assert "DescribeRepositories failed" in lines[3]

    code, out, _ = run_cli("status", *where[:4], "--format", "json")
    runs = json.loads(out)["runs"]
    assert [r["outcome"] for r in runs] == ["ok", "failed", "ok"]
    first, failed, last = runs[2], runs[1], runs[0]
    images = sum(len(r.images) for r in inventory.repositories())
    assert json.loads(first["rows_per_table"])["images"] == images
    assert json.loads(first["requests_per_call"])["DescribeRepositories"] == 1
    assert failed["exit_code"] == EXIT_AUTH and "credentials" in failed["error"]
    # the full refresh fetched every image again and restarted the history
    assert json.loads(last["rows_per_table"])["images"] == images and last["full_refresh"] is True
    with duckdb.connect(str(tmp_path / "registry_etl.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM registry.tags WHERE valid_to IS NOT NULL").fetchone()[0] == 0
        assert con.execute("SELECT count(*) FROM registry.images").fetchone()[0] == images
        dump = str(con.execute("SELECT * FROM registry.load_runs").fetchall())
    assert WRONG_SECRET not in dump


def test_json_logs_are_one_object_per_line_and_redacted(tmp_path, run_cli):
    with EcrEmulator(Inventory(seed=2, registries=("us-east-1",), repositories=1, images=4)) as emulator:
        env = {**demo_env(emulator), "AWS_SECRET_ACCESS_KEY": WRONG_SECRET}
        where = ("--duckdb", str(tmp_path / "r.duckdb"), "--pipelines-dir", str(tmp_path / "p"))
        code, out, err = run_cli("load", "ecr", *where, "--log-format", "json", "--debug", env=env)
    assert code == EXIT_AUTH
    records = [json.loads(line) for line in err.splitlines() if line.strip()]
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    events = {r.get("event"): r for r in records}
    assert events["error"]["exit_code"] == EXIT_AUTH and events["error"]["kind"] == "auth"
    assert events["load_finished"]["summary"]["outcome"] == "failed"
    assert any("traceback" in r for r in records), "--debug adds the traceback, as a field"
    assert WRONG_SECRET not in err + out


def test_status_sees_a_running_load_without_taking_the_lock(tmp_path):
    from pipelines.lock import current_holder

    path = str(tmp_path / "r.duckdb.lock")
    assert current_holder(path) is None
    with LoadLock(path):
        assert current_holder(path)["pid"] == os.getpid()
        LoadLock(path + ".other").acquire().release()
    assert current_holder(path) is None  # released: the file is emptied


def test_lock_wait_takes_the_lock_once_its_holder_ends(tmp_path):
    """`--wait`: a second taker polls until the first releases; one log line says it waits."""
    path = str(tmp_path / "w.lock")
    waiting = threading.Event()

    class Announce(logging.Handler):
        def emit(self, record):
            if "waiting up to 60 s for it to end" in record.getMessage():
                waiting.set()

    handler = Announce()
    logger = logging.getLogger("registry_etl.lock")
    logger.addHandler(handler)
    saved = logger.level
    logger.setLevel(logging.INFO)
    got = []
    try:
        first = LoadLock(path).acquire()
        taker = threading.Thread(target=lambda: got.append(LoadLock(path).acquire(wait=60)))
        taker.start()
        assert waiting.wait(60), "the waiting taker never said so"
        assert taker.is_alive() and not got
        first.release()
        taker.join(60)
        assert got and got[0].path == path
        got[0].release()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved)


def test_a_duckdb_refusal_anywhere_in_the_chain_is_exit_75_with_the_holders_pid(tmp_path):
    """A real refusal: another process holds the file read-only, this one asks to write."""
    from pipelines.exits import classify
    from pipelines.lock import FileBusy, file_busy

    path = str(tmp_path / "held.duckdb")
    duckdb.connect(path).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb, sys\ncon = duckdb.connect({path!r}, read_only=True)\nprint('open', flush=True)\nsys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(duckdb.IOException) as refused:
            duckdb.connect(path)
    finally:
        holder.stdin.close()
        holder.wait(60)

    class StepFailed(Exception):  # what dlt's PipelineStepFailed carries: the step
        step = "load"

    try:
        try:
            raise refused.value
        except duckdb.IOException as exc:
            raise StepFailed("Pipeline execution failed at `step=load`") from exc
    except StepFailed as wrapped:
        code, kind, message = classify(wrapped)
        busy = file_busy(wrapped)
    assert (code, kind) == (EXIT_LOCKED, "file_busy")
    assert isinstance(busy, FileBusy) and busy.pid == holder.pid and busy.path == path and busy.step == "load"
    assert message.startswith(f"the DuckDB file {path} is open in another process (PID {holder.pid}")
    assert "kept in the pipeline folder and the next run loads it" in message and "\n" not in message
    assert classify(RuntimeError("Could not set lock on a bicycle"))[0] != EXIT_LOCKED
