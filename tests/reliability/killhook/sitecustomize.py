"""Test-only: makes a `python -m pipelines.cli load …` subprocess stop at a named point of
dlt's run so a test can SIGKILL it exactly there.

Active only when RELIABILITY_PAUSE_AT names a point and RELIABILITY_PAUSE_FILE a marker path
(the kill tests put this folder on PYTHONPATH; Python imports `sitecustomize` at start-up).
At the point the process writes the marker and sleeps; the test sees the marker and kills it.
Nothing here changes what the process does before that point.
"""

import os
import threading
import time

POINT = os.environ.get("RELIABILITY_PAUSE_AT")
MARKER = os.environ.get("RELIABILITY_PAUSE_FILE")
TABLE = os.environ.get("RELIABILITY_PAUSE_TABLE") or "tags"  # the copy job `load_job` stops after
# `load_job` stops only once the merge job of this table committed (a package half merged)
AFTER_MERGE = os.environ.get("RELIABILITY_PAUSE_AFTER_MERGE")
_paused = threading.Event()


def _pause(where: str) -> None:
    if _paused.is_set():
        time.sleep(3600)
    _paused.set()
    with open(MARKER + ".tmp", "w") as handle:
        handle.write(where)
    os.replace(MARKER + ".tmp", MARKER)  # the test sees the whole marker or none
    time.sleep(3600)


def _before(cls, name, point):
    original = getattr(cls, name)

    def wrapper(*args, **kwargs):
        _pause(point)
        return original(*args, **kwargs)

    setattr(cls, name, wrapper)


def _after(cls, name, point, nth=1):
    original = getattr(cls, name)
    calls = [0]

    def wrapper(*args, **kwargs):
        result = original(*args, **kwargs)
        calls[0] += 1
        if calls[0] >= nth:
            _pause(point)
        return result

    setattr(cls, name, wrapper)


def _install() -> None:
    from dlt.common.storages.load_storage import LoadStorage
    from dlt.destinations.impl.duckdb.duck import DuckDbCopyJob
    from dlt.destinations.job_client_impl import SqlLoadJob
    from dlt.extract.extract import Extract
    from dlt.load.load import Load
    from dlt.pipeline.pipeline import Pipeline

    if POINT == "extract_commit":  # everything extracted, package and state not yet committed
        _before(Extract, "commit_packages", POINT)
    elif POINT == "before_normalize":  # package committed, nothing normalized
        _before(Pipeline, "normalize", POINT)
    elif POINT == "normalize_commit":  # files normalized, not yet moved to the load volume
        _before(LoadStorage, "commit_new_load_package", POINT)
    elif POINT == "load_job":  # the TABLE file inserted (tags: into staging), its job not yet marked done
        original_copy = DuckDbCopyJob.run
        merged = threading.Event()

        def copy(self):
            original_copy(self)
            if self.load_table_name == TABLE:
                if AFTER_MERGE and not merged.wait(120):
                    raise SystemExit(f"the merge of {AFTER_MERGE} never ran")
                _pause(POINT)

        DuckDbCopyJob.run = copy
        if AFTER_MERGE:
            original_sql = SqlLoadJob.run

            def sql(self):
                original_sql(self)
                if self.load_table_name == AFTER_MERGE:
                    merged.set()

            SqlLoadJob.run = sql
    elif POINT == "mid_merge":  # half the statements of a merge job ran, in its transaction
        original_run = SqlLoadJob.run

        def run(self):
            client = self._job_client.sql_client
            run_many = client.execute_many

            def execute_many(statements, *args, **kwargs):
                half = max(1, len(statements) // 2)
                run_many(statements[:half], *args, **kwargs)
                _pause(POINT)

            client.execute_many = execute_many
            return original_run(self)

        SqlLoadJob.run = run
    elif POINT == "merge_done":  # a merge job committed, its outcome not yet recorded
        original_merge = SqlLoadJob.run

        def merge(self):
            original_merge(self)
            _pause(POINT)

        SqlLoadJob.run = merge
    elif POINT == "complete_package":  # every job done, package not marked loaded
        _before(Load, "complete_package", POINT)
    elif POINT == "after_load":  # load returned, before views and the summary
        _after(Pipeline, "load", POINT)
    else:
        raise SystemExit(f"unknown RELIABILITY_PAUSE_AT {POINT!r}")


if POINT and MARKER:
    _install()
