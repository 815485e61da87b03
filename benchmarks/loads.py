"""What the measured child processes run: our load (pipelines.load.run_load) into a DuckDB file."""

from __future__ import annotations

import os
from typing import Any, Dict, Optional

# imported here, not in the timed call: the measurement covers the load, not dlt's import
from pipelines.load import make_pipeline, run_load  # noqa: E402


def our_load(provider: str, workdir: str, source_options: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """One `run_load` of `provider` into `workdir/registry_etl.duckdb` (state kept in `workdir`)."""
    pipeline = make_pipeline(
        duckdb_path=os.path.join(workdir, "registry_etl.duckdb"),
        pipelines_dir=os.path.join(workdir, "pipelines"),
    )
    options = {provider: dict(source_options or {})}
    summary = run_load(pipeline, [provider], source_options=options)
    with pipeline.sql_client() as client:
        images = client.execute_sql("SELECT count(*) FROM images WHERE provider = %s", provider)[0][0]
    steps = {}
    trace = pipeline.last_trace
    for step in trace.steps if trace else ():
        if step.finished_at and step.started_at:
            steps[step.step] = round((step.finished_at - step.started_at).total_seconds(), 2)
    return {"rows": summary.rows, "images_in_destination": images, "client_requests": summary.requests, "steps": steps}
