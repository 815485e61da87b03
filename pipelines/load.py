"""Running loads: one pipeline, any set of sources, a summary at the end."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence

import dlt

from .catalog import PROVIDERS

log = logging.getLogger("registry_etl.load")

PIPELINE_NAME = "registry_etl"
DATASET_NAME = "registry"
# a file named like its dataset breaks DuckDB ("Ambiguous reference to catalog or schema"),
# so the default file is named after the pipeline
DEFAULT_DUCKDB = f"{PIPELINE_NAME}.duckdb"


@dataclass
class LoadSummary:
    providers: List[str]
    rows: Dict[str, int] = field(default_factory=dict)
    requests: Dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    load_id: Optional[str] = None

    def lines(self) -> List[str]:
        out = [f"loaded {', '.join(self.providers)} in {self.seconds:.1f} s (load id {self.load_id})"]
        width = max([len(t) for t in self.rows] + [5])
        for table in sorted(self.rows):
            out.append(f"  {table:<{width}}  {self.rows[table]:>10,} rows")
        if self.requests:
            calls = ", ".join(f"{op} {n}" for op, n in sorted(self.requests.items()))
            out.append(f"  requests: {calls}")
        return out


def make_pipeline(
    destination: Optional[Any] = None,
    duckdb_path: Optional[str] = None,
    pipelines_dir: Optional[str] = None,
    dataset_name: str = DATASET_NAME,
    progress: Optional[Any] = None,
) -> dlt.Pipeline:
    """The registry_etl pipeline: DuckDB at `duckdb_path` unless another destination is given
    (by name, by dlt destination object, or by dlt's config: DESTINATION_TYPE, …)."""
    if destination is None:
        destination = os.environ.get("DESTINATION_TYPE") or "duckdb"
    if destination == "duckdb":
        destination = dlt.destinations.duckdb(duckdb_path or DEFAULT_DUCKDB)
    return dlt.pipeline(
        pipeline_name=PIPELINE_NAME,
        destination=destination,
        dataset_name=dataset_name,
        pipelines_dir=pipelines_dir,
        progress=progress,
    )


@contextmanager
def environment(values: Dict[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of a block (the demo's emulator settings)."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_load(
    pipeline: dlt.Pipeline,
    providers: Sequence[str],
    full_refresh: bool = False,
    source_options: Optional[Dict[str, Dict[str, Any]]] = None,
) -> LoadSummary:
    """Extract the given providers' sources and load them in one go; returns the summary."""
    started = time.monotonic()
    counter: Counter = Counter()
    sources = []
    for name in providers:
        provider = PROVIDERS[name]
        options = dict((source_options or {}).get(name, {}))
        options.setdefault("request_counter", counter)
        sources.append(provider.make_source(**options))
    info = pipeline.run(sources, refresh="drop_sources" if full_refresh else None)
    summary = LoadSummary(list(providers), requests=dict(counter))
    trace = pipeline.last_trace
    if trace and trace.last_normalize_info:
        summary.rows = {
            table: count
            for table, count in trace.last_normalize_info.row_counts.items()
            if not table.startswith("_dlt")
        }
    summary.load_id = info.loads_ids[-1] if info.loads_ids else None
    summary.seconds = time.monotonic() - started
    try:
        from analytics import create_views
    except ImportError:  # the analytics layer is optional for a bare load
        create_views = None
    if create_views is not None:
        create_views(pipeline)
    return summary


def stderr_progress() -> Any:
    """dlt's log progress, on stderr, every few seconds."""
    return dlt.progress.log(log_period=5, logger=sys.stderr, dump_system_stats=False)
