"""The fixed cost of a load run (issue 7): what a no-op rerun does besides the registry's calls.

A no-op rerun (nothing changed in the registry) in a fresh process, as the CLI and the benchmark
run it, must leave every data table and view exactly as they were, record its `load_runs` row,
and not pay for what it does not use: dlt's DuckDB destination imported SQLAlchemy (to parse and
print a file path) and, through DuckDB's first bound parameter, pandas (~0.3 s of CPU each);
`pipelines/duckdb_destination.py` avoids both. The views are not rewritten when DuckDB holds
them exactly as they would be created (`analytics.stored_views_match`).
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any, Dict, List, Tuple

import duckdb

from tests.support import ROOT

DATASET = "registry"

# one `run_load` of ECR as the CLI makes it (recorded in load_runs), in a process of its own
RUN = """
import json, sys
from pipelines.load import make_pipeline, run_load
pipeline = make_pipeline(duckdb_path=sys.argv[1], pipelines_dir=sys.argv[2])
summary = run_load(pipeline, ["ecr"], record_run=True)
print(json.dumps({
    "outcome": summary.outcome, "rows": summary.rows, "requests": summary.requests,
    "imported": sorted(m for m in ("pandas", "sqlalchemy") if m in sys.modules),
}))
"""


def run_in_process(tmp_path) -> Dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", RUN, str(tmp_path / "registry_etl.duckdb"), str(tmp_path / "pipelines")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def tables_and_views(path: str) -> Tuple[Dict[str, List[tuple]], Dict[str, Tuple[int, str, str]], int]:
    """Every data table's rows (all columns, dlt's included), every view's (oid, sql, comment),
    and the number of `load_runs` rows."""
    with duckdb.connect(path, read_only=True) as con:
        names = [name for (name,) in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE schema_name = ? AND database_name = current_database()"
            " ORDER BY 1", [DATASET]).fetchall()]
        data = {
            name: sorted(con.execute(f'SELECT * FROM "{DATASET}"."{name}"').fetchall(), key=repr)
            for name in names if not name.startswith("_dlt") and name != "load_runs"
        }
        views = {name: (oid, sql, comment) for name, oid, sql, comment in con.execute(
            "SELECT view_name, view_oid, sql, comment FROM duckdb_views() WHERE schema_name = ?"
            " AND database_name = current_database() AND NOT internal", [DATASET]).fetchall()}
        runs = con.execute(f'SELECT count(*) FROM "{DATASET}"."load_runs"').fetchone()[0]
    return data, views, runs


def test_a_noop_rerun_changes_nothing_and_skips_what_it_does_not_need(ecr, tmp_path):
    import analytics

    full = run_in_process(tmp_path)
    assert full["outcome"] == "ok" and full["rows"]["images"] > 0
    path = str(tmp_path / "registry_etl.duckdb")
    data, views, runs = tables_and_views(path)
    assert sorted(views) == sorted(analytics.VIEW_NAMES) and runs == 1

    noop = run_in_process(tmp_path)
    assert noop["outcome"] == "ok"
    assert sum(noop["rows"].values()) == 0, noop["rows"]
    assert not {"DescribeImages", "BatchGetImage"} & set(noop["requests"]), noop["requests"]
    data_after, views_after, runs_after = tables_and_views(path)
    assert data_after == data  # every data table, to the last dlt column
    assert views_after == views  # the same view objects (oids): not dropped and created again
    assert runs_after == 2  # the no-op's run is recorded
    # the fixed cost of a run: neither library is needed when nothing is loaded
    assert noop["imported"] == [], f"a no-op run imported {noop['imported']} (issue 7: ~0.3 s of CPU each)"
