"""Running loads: one pipeline, any set of sources, any dlt destination, a summary at the end.

Every run, failed ones included, leaves one row in the dataset's `load_runs` table
(`pipelines.runs`), so `registry-etl status` and any SQL client can see what ran, how long,
how many rows and requests it took, and how it ended.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import uuid
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Dict, Iterator, List, Optional, Sequence

import dlt

from sources.concurrency import relaxed_collector
from sources.model import IMAGES
from sources.state import REREAD_KNOWN_IMAGES

from .catalog import PROVIDERS
from .exits import EXIT_PARTIAL, classify
from .observe import RetryCounter

log = logging.getLogger("registry_etl.load")

PIPELINE_NAME = "registry_etl"
DATASET_NAME = "registry"
# a file named like its dataset breaks DuckDB ("Ambiguous reference to catalog or schema"),
# so the default file is named after the pipeline
DEFAULT_DUCKDB = f"{PIPELINE_NAME}.duckdb"

FILES_LOAD_ID_SETTING = "NORMALIZE__PARQUET_NORMALIZER__ADD_DLT_LOAD_ID"

OUTCOME_OK = "ok"
OUTCOME_PARTIAL = "partial"  # loaded, but some records only in part (see load_problems)
OUTCOME_FAILED = "failed"


@dataclass
class LoadSummary:
    """What one run did: stored in `load_runs` and printed by the CLI."""

    providers: List[str]
    rows: Dict[str, int] = field(default_factory=dict)
    requests: Dict[str, int] = field(default_factory=dict)
    retries: int = 0
    seconds: float = 0.0
    load_id: Optional[str] = None
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    started_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    finished_at: Optional[datetime] = None
    outcome: str = OUTCOME_OK
    exit_code: int = 0
    error: Optional[str] = None
    destination: Optional[str] = None
    dataset: Optional[str] = None
    full_refresh: bool = False
    # what this run did with packages an interrupted run left behind ("finished …", "discarded …")
    recovered: List[str] = field(default_factory=list)

    @property
    def problems(self) -> int:
        """Records loaded only in part during this run (rows written to `load_problems`)."""
        return self.rows.get("load_problems", 0)

    def lines(self) -> List[str]:
        where = f" into {self.destination}/{self.dataset}" if self.destination else ""
        head = f"{self.outcome}: {', '.join(self.providers)}{where} in {self.seconds:.1f} s"
        out = [head + (f" (load id {self.load_id})" if self.load_id else "")]
        width = max([len(t) for t in self.rows] + [5])
        for table in sorted(self.rows):
            out.append(f"  {table:<{width}}  {self.rows[table]:>10,} rows")
        if self.requests:
            calls = ", ".join(f"{op} {n}" for op, n in sorted(self.requests.items()))
            out.append(f"  requests: {calls}; retries: {self.retries}")
        if self.problems:
            out.append(f"  {self.problems} record(s) loaded only in part: see the load_problems table")
        for note in self.recovered:
            out.append(f"  recovered: {note}")
        if self.error:
            out.append(f"  error: {self.error}")
        return out

    def as_dict(self) -> Dict[str, Any]:
        return {
            "run_id": self.run_id,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "seconds": round(self.seconds, 3),
            "outcome": self.outcome,
            "exit_code": self.exit_code,
            "providers": self.providers,
            "destination": self.destination,
            "dataset": self.dataset,
            "load_id": self.load_id,
            "rows": self.rows,
            "requests": self.requests,
            "retries": self.retries,
            "error": self.error,
            "full_refresh": self.full_refresh,
            "recovered": self.recovered,
        }


def make_pipeline(
    destination: Optional[Any] = None,
    duckdb_path: Optional[str] = None,
    pipelines_dir: Optional[str] = None,
    dataset_name: str = DATASET_NAME,
    progress: Optional[Any] = None,
    pipeline_name: str = PIPELINE_NAME,
) -> dlt.Pipeline:
    """The registry_etl pipeline.

    Args:
        destination: A dlt destination name (`postgres`, `filesystem`, `motherduck`, …), a dlt
            destination object, or None for dlt's `DESTINATION_TYPE` setting, else DuckDB.
            Credentials and options come from dlt's config (`[destination.<name>]`,
            `DESTINATION__<NAME>__CREDENTIALS`, …).
        duckdb_path: The DuckDB file when the destination is DuckDB (default `registry_etl.duckdb`,
            or `DESTINATION__DUCKDB__CREDENTIALS`).
        pipelines_dir: Where dlt keeps the pipeline's local state (default `~/.dlt/pipelines`).
        dataset_name: The dataset (schema) name.
        progress: A dlt progress collector.
        pipeline_name: The pipeline's name (the run log uses its own).
    """
    if destination is None:
        destination = os.environ.get("DESTINATION_TYPE") or "duckdb"
    if destination == "duckdb":
        from .duckdb_destination import registry_duckdb

        path = duckdb_path or os.environ.get("DESTINATION__DUCKDB__CREDENTIALS") or DEFAULT_DUCKDB
        # dlt's duckdb with a merge that can spill (pipelines/duckdb_destination.py)
        destination = registry_duckdb(path)
    return dlt.pipeline(
        pipeline_name=pipeline_name,
        destination=destination,
        dataset_name=dataset_name,
        pipelines_dir=pipelines_dir,
        progress=progress,
    )


def is_file_destination(pipeline: dlt.Pipeline) -> bool:
    """True for dlt's filesystem destination (Parquet/JSONL files: no merge, no scd2, no views)."""
    return pipeline.destination is not None and pipeline.destination.destination_type.endswith(".filesystem")


@contextmanager
def environment(values: Dict[str, Optional[str]]) -> Iterator[None]:
    """Set environment variables for the duration of a block (the demo's emulator settings);
    a value of None unsets the variable for the block."""
    saved = {key: os.environ.get(key) for key in values}
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
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
    record_run: bool = False,
    summary: Optional[LoadSummary] = None,
) -> LoadSummary:
    """Extract the given providers' sources and load them in one go; returns the summary.

    With `record_run` (the CLI sets it) the summary is also appended to the dataset's
    `load_runs` table, for a failed run too: then the exception is re-raised after recording,
    with `summary.outcome == "failed"`, its exit code and the redacted message in `summary.error`.
    Pass `summary` to see it filled in even when the run raises.
    """
    summary = summary or LoadSummary(list(providers))
    summary.providers = list(providers)
    summary.full_refresh = full_refresh
    summary.destination = pipeline.destination.destination_name if pipeline.destination else None
    summary.dataset = pipeline.dataset_name
    started = time.monotonic()
    counter: Counter = Counter()
    retries = RetryCounter()
    try:
        with retries, relaxed_collector():
            def make_sources() -> List[Any]:
                sources = []
                for name in providers:
                    options = dict((source_options or {}).get(name, {}))
                    options.setdefault("request_counter", counter)
                    sources.append(PROVIDERS[name].make_source(**options))
                return sources

            files = is_file_destination(pipeline)
            # what an interrupted run left pending is settled first, so that this run still
            # extracts anew (dlt's run() would load the pending package and stop there)
            summary.recovered = settle_pending(pipeline)
            if full_refresh:
                _drop_sources(pipeline, make_sources())
            # on files every table is an append log: each row must say which run wrote it
            # (dlt leaves `_dlt_load_id` out of arrow tables unless asked; pipelines.snapshots)
            with environment({FILES_LOAD_ID_SETTING: "true"} if files else {}):
                info = pipeline.run(make_sources(), loader_file_format="parquet" if files else None)
            _clear_reread(pipeline)
        summary.load_id = info.loads_ids[-1] if info.loads_ids else None
        summary.rows = _row_counts(pipeline)
        if summary.problems:
            summary.outcome, summary.exit_code = OUTCOME_PARTIAL, EXIT_PARTIAL
        _create_views(pipeline)
    except BaseException as exc:
        summary.exit_code, _kind, summary.error = classify(exc)
        summary.outcome = OUTCOME_FAILED
        summary.rows = _row_counts(pipeline)
        raise
    finally:
        # the source's own counter (when a caller passed one) is the one that saw the calls
        used = next((o["request_counter"] for o in (source_options or {}).values() if "request_counter" in o), counter)
        summary.requests = dict(used)
        summary.retries = retries.count
        summary.seconds = time.monotonic() - started
        summary.finished_at = datetime.now(timezone.utc)
        if record_run:
            from .runs import record

            record(pipeline, summary)
    return summary


def settle_pending(pipeline: dlt.Pipeline) -> List[str]:
    """Finish or discard the load packages an interrupted run left in the pipeline's folder.

    A run killed after its package was committed leaves it pending; dlt's `run()` would load
    that package and return without extracting. Here:

    - A package whose loading never started, or whose jobs all have a recorded outcome, is
      finished (normalised if needed, then loaded): dlt resumes it exactly (jobs done are not
      run again, a job committed but not yet moved is replayed from its recorded outcome).
    - A package with an *interrupted* copy job (started, no recorded outcome) is discarded on SQL
      destinations: the job may have committed its rows before the kill, and dlt would run it
      again: the rows twice in the scd2 staging table (duplicate open tag rows) or in an append
      table. An interrupted merge job does not count: it works from the staging table alone,
      so running it again gives the same result. `abort_packages()` marks the package aborted
      (no `_dlt_loads` row, so its state row never counts) and rewinds the local state and
      schemas to where the package started, so the next extract reads everything the
      discarded package held. What its committed jobs
      already wrote stays and converges: merge tables are upserts by key, the scd2 merge of an
      unchanged tag is a no-op, a problem row is one more (honest) record of a run that saw it.
      If it had merged `images`, the next runs read every image's details again until a load
      lands (`sources.state.REREAD_KNOWN_IMAGES`): the sources skip digests already in `images`,
      and the layers, manifests or provider rows of those images may not have landed.
    - On the filesystem destination a job that runs again rewrites the same file
      (`<table>/<load_id>.<file_id>`), so the package is finished there too.

    Returns one line per package handled (the summary's `recovered`), empty when none was pending.
    """
    plan = pipeline.abort_packages(dry_run=True)
    if plan is None:
        return []
    package = plan["package_to_abort"]
    # a merge job (a `.sql` followup) works from the staging table alone: run again, it gives the
    # same result (delete-insert of the same keys; scd2: nothing left to retire or insert)
    interrupted = [job for job in (package["interrupted_jobs"] if package else []) if not job.endswith(".sql")]
    if interrupted and not is_file_destination(pipeline):
        load_id = package["load_id"]  # type: ignore[index]
        jobs = ", ".join(sorted(os.path.basename(job) for job in interrupted))
        log.warning(
            "load %s was interrupted while loading (job(s) %s may have written already): discarding it "
            "and extracting anew, so no row is loaded twice", load_id, jobs,
        )
        pipeline.abort_packages()
        if _merged(pipeline, load_id, IMAGES.name):
            # its `images` rows are in the destination, maybe without their layers, manifests or
            # provider rows (each table merges in its own transaction); the sources skip details
            # of digests in `images`, so until a load lands they must not skip any
            log.warning("load %s had merged images already: this run reads every image's details again", load_id)
            pipeline.set_local_state_val(REREAD_KNOWN_IMAGES, True)
        dropped = [lid for lid in plan["packages_to_delete"] + plan["extracted_packages_to_delete"] if lid != load_id]
        return [f"discarded load {lid}, left by an interrupted run" for lid in [load_id, *sorted(set(dropped))]]
    pending = sorted(set(pipeline.list_extracted_load_packages()) | set(pipeline.list_normalized_load_packages()))
    log.warning("finishing load(s) %s left pending by an interrupted run, then extracting anew", ", ".join(pending))
    if pipeline.list_extracted_load_packages():
        pipeline.normalize()
    if pipeline.list_normalized_load_packages():
        pipeline.load()
    return [f"finished load {load_id}, left pending by an interrupted run" for load_id in pending]


def _merged(pipeline: dlt.Pipeline, load_id: str, table: str) -> bool:
    """Whether the (aborted) package `load_id` committed a job writing `table` in the dataset
    itself: its merge job, or a direct load when the table is not staged."""
    try:
        info = pipeline.get_load_package_info(load_id).jobs
        # a started job may have committed before the kill (its outcome not yet recorded):
        # load jobs run in parallel, so `images` can be merged while another table's copy is cut.
        # `abort_packages()` (called before this) moves such a job to `failed_jobs`: a merge job
        # commits inside `run()`, and its outcome is recorded only after the job closes its
        # connection, so a kill in between leaves a merged table with an unrecorded job
        jobs = list(info["completed_jobs"]) + list(info.get("started_jobs", ())) + list(info.get("failed_jobs", ()))
    except Exception as exc:  # the package is gone: assume the worst
        log.debug("no package info for %s: %s", load_id, exc)
        return True
    return any(job.job_file_info.table_name == table for job in jobs
               if job.job_file_info.file_format == "sql" or not _staged(pipeline, table))


def _staged(pipeline: dlt.Pipeline, table: str) -> bool:
    """Whether dlt loads `table` through the staging dataset (merge tables on SQL destinations)."""
    schema = pipeline.default_schema
    disposition = schema.tables.get(table, {}).get("write_disposition") if schema else None
    return disposition == "merge" and not is_file_destination(pipeline)


def _clear_reread(pipeline: dlt.Pipeline) -> None:
    """A load landed: the digests in `images` can be trusted again."""
    try:
        if pipeline.get_local_state_val(REREAD_KNOWN_IMAGES):
            pipeline.set_local_state_val(REREAD_KNOWN_IMAGES, False)
    except KeyError:
        pass


def _drop_sources(pipeline: dlt.Pipeline, sources: List[Any]) -> None:
    """`--full-refresh`: drop the sources' tables and state in the destination FIRST.

    dlt's `refresh="drop_sources"` drops them only at the load step, after extraction; but the
    sources read the destination while extracting (digests already loaded are not fetched
    again), so a one-step refresh would skip every known image and then drop it. Here an
    empty run with the refresh drops everything, and the real run starts from nothing.
    """
    for source in sources:
        for resource in source.resources.values():
            resource.selected = False
    pipeline.run(sources, refresh="drop_sources")
    log.info("full refresh: dropped the tables and state of %s", ", ".join(s.name for s in sources))


def root_cause(exc: BaseException) -> BaseException:
    """dlt wraps source errors in PipelineStepFailed / ResourceExtractionError: find ours."""
    from sources.errors import RegistryError

    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, RegistryError):
            return exc
        nxt = exc.__cause__ or exc.__context__ or getattr(exc, "exception", None)
        if nxt is None:
            break
        exc = nxt
    return exc


def _row_counts(pipeline: dlt.Pipeline) -> Dict[str, int]:
    trace = pipeline.last_trace
    if not trace or not trace.last_normalize_info:
        return {}
    return {
        table: count
        for table, count in trace.last_normalize_info.row_counts.items()
        if not table.startswith("_dlt")
    }


def _create_views(pipeline: dlt.Pipeline) -> None:
    try:
        from analytics import create_views
    except ImportError:  # the analytics layer is optional for a bare load
        return
    if is_file_destination(pipeline):
        # plain files hold no views; see docs/destinations.md for querying them
        log.info("no views on the filesystem destination")
        return
    create_views(pipeline)


def stderr_progress(logger: Optional[logging.Logger] = None) -> Any:
    """dlt's log progress every few seconds: on stderr, or through `logger` (JSON logs)."""
    return dlt.progress.log(log_period=5, logger=logger or sys.stderr, dump_system_stats=False)
