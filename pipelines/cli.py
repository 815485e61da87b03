"""`registry-etl`: load registries, run the demo, print the report, start emulators."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from typing import List, Optional

from sources.errors import RegistryError

from .catalog import PROVIDERS
from .exits import (  # noqa: F401  (re-exported: the codes are part of the CLI's contract)
    EXIT_API,
    EXIT_AUTH,
    EXIT_CODES,
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_LOCKED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_PARTIAL,
    classify,
)
from .load import root_cause as _root_cause  # noqa: F401  (kept for callers of the old name)
from .logs import is_json, setup_logging

log = logging.getLogger("registry_etl")

DEMO_DUCKDB = "demo.duckdb"

NEXT_SQL = """Try next (duckdb {path}):
  SELECT repository, count(*) AS images, sum(size_bytes) AS bytes FROM registry.images GROUP BY ALL ORDER BY bytes DESC LIMIT 10;
  SELECT repository, tag, digest, valid_from, valid_to FROM registry.tags ORDER BY repository, tag, valid_from;
  SELECT digest, count(DISTINCT repository) AS repositories FROM registry.images__layers GROUP BY digest HAVING count(DISTINCT repository) > 1;"""


def _setup_logging(debug: bool, log_format: str = "text") -> None:
    setup_logging(debug, log_format)


def _report_error(args: argparse.Namespace, message: str, code: int, kind: str = "error") -> int:
    """The one-paragraph error: a plain `error: ...` line, or a JSON log object."""
    if is_json(getattr(args, "log_format", "text")):
        log.error(message, extra={"event": "error", "kind": kind, "exit_code": code})
    else:
        print(f"error: {message}", file=sys.stderr)
    return code


def _fail(exc: BaseException, args: argparse.Namespace) -> int:
    debug = getattr(args, "debug", False)
    if debug:
        log.error("failed", exc_info=(type(exc), exc, exc.__traceback__))
    code, kind, message = classify(exc)
    if code == EXIT_FAILED and not isinstance(exc, RegistryError) and not debug:
        message += " (run with --debug for the traceback)"
    return _report_error(args, message, code, kind)


def _pipeline_for(args: argparse.Namespace, progress: object = None) -> object:
    from .load import make_pipeline

    return make_pipeline(
        destination=args.destination,
        duckdb_path=args.duckdb,
        pipelines_dir=args.pipelines_dir,
        progress=progress,
    )


def cmd_load(args: argparse.Namespace) -> int:
    from . import lock
    from .load import LoadSummary, run_load, stderr_progress

    unknown = [p for p in args.sources if p not in PROVIDERS]
    if unknown:
        return _report_error(args, f"unknown source(s) {', '.join(unknown)}; known: {', '.join(PROVIDERS)}", EXIT_CONFIG, "config")
    progress = None
    if not args.quiet:
        progress = stderr_progress(logging.getLogger("registry_etl.progress") if is_json(args.log_format) else None)
    pipeline = _pipeline_for(args, progress)
    deadline = time.monotonic() + args.wait
    try:
        held = lock.acquire(pipeline, wait=args.wait)
    except lock.LockBusy as busy:
        return _report_error(args, str(busy), EXIT_LOCKED, "locked")
    summary = LoadSummary(list(args.sources))
    with held:
        try:  # DuckDB: a notebook holding the file would make the load fail later; say it now
            lock.check_file_free(pipeline, wait=args.wait, deadline=deadline)
        except lock.FileBusy as busy:
            return _report_error(args, str(busy), EXIT_LOCKED, "file_busy")
        log.info("load started: %s", ", ".join(args.sources), extra={"event": "load_started", "run_id": summary.run_id})
        try:
            run_load(pipeline, args.sources, full_refresh=args.full_refresh, record_run=True, summary=summary)
        except Exception as exc:
            code = _fail(exc, args)
            log.info("load failed", extra={"event": "load_finished", "summary": summary.as_dict()})
            return code
    print("\n".join(summary.lines()))
    log.info("load finished: %s", summary.outcome, extra={"event": "load_finished", "summary": summary.as_dict()})
    if summary.exit_code == EXIT_PARTIAL:
        _report_error(args, f"{summary.problems} record(s) were loaded only in part: see the load_problems table", EXIT_PARTIAL, "partial")
    return summary.exit_code


def cmd_status(args: argparse.Namespace) -> int:
    from .lock import current_holder, lock_path
    from .runs import last_runs

    pipeline = _pipeline_for(args)
    if args.duckdb or pipeline.destination.destination_name == "duckdb":
        from .load import DEFAULT_DUCKDB

        path = args.duckdb or os.environ.get("DESTINATION__DUCKDB__CREDENTIALS") or DEFAULT_DUCKDB
        if not os.path.exists(path):
            return _report_error(args, f"no DuckDB file at {path}; nothing has been loaded there yet", EXIT_CONFIG, "config")
    running = current_holder(lock_path(pipeline))
    try:
        runs = last_runs(pipeline, args.limit)
    except Exception:
        if not running:
            raise
        # DuckDB: the running load holds the file; say so instead of failing
        print(f"a load is running now (pid {running.get('pid')}, since {running.get('since')}); "
              "the run log can be read when it ends")
        return EXIT_OK
    if args.format == "json":
        print(json.dumps({"running": running, "runs": runs}, default=str, indent=2))
        return EXIT_OK
    if running:
        print(f"a load is running now (pid {running.get('pid')}, since {running.get('since')})")
    if not runs:
        print("no runs recorded in this dataset yet")
        return EXIT_OK
    print(_runs_table(runs))
    return EXIT_OK


def _runs_table(runs: List[dict]) -> str:
    header = ["started_at", "outcome", "exit", "seconds", "sources", "rows", "requests", "retries", "error"]
    cells = [header]
    for run in runs:
        started = run["started_at"]
        cells.append([
            started.strftime("%Y-%m-%d %H:%M:%S") if hasattr(started, "strftime") else str(started),
            str(run["outcome"]),
            "" if run["exit_code"] is None else str(run["exit_code"]),
            "" if run["seconds"] is None else f"{run['seconds']:.1f}",
            str(run["providers"] or ""),
            f"{run['rows_total'] or 0:,}",
            f"{run['requests_total'] or 0:,}",
            str(run["retries"] or 0),
            (run["error"] or "")[:120],
        ])
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _change_demo_inventory(emulator: object) -> bool:
    """Move and delete some tags and push some images in an emulator that serves an inventory."""
    if getattr(emulator, "inventory", None) is None:  # the OCI demo is a real registry, left as it is
        return False
    emulator.mutate({"move_tags": 4, "delete_tags": 2, "push_images": 3})  # type: ignore[attr-defined]
    return True


def cmd_demo(args: argparse.Namespace) -> int:
    from .load import environment, make_pipeline, run_load
    from .report import render_report

    path = os.path.abspath(args.duckdb or DEMO_DUCKDB)
    for leftover in (path, path + ".wal"):
        if os.path.exists(leftover):
            os.remove(leftover)
    started: List[str] = []
    env: dict = {}
    emulators: List[object] = []
    try:
        for name, provider in PROVIDERS.items():
            try:
                emulator, provider_env = provider.start_demo_emulator()
            except Exception as exc:  # e.g. the OCI demo needs the docker-registry binary
                print(f"demo: skipping {name}: {exc}", file=sys.stderr)
                continue
            started.append(name)
            env.update(provider_env)
            emulators.append(emulator)
        print(f"demo: emulators on loopback for {', '.join(started)}; loading into {path}", file=sys.stderr)
        workdir = tempfile.mkdtemp(prefix="registry-etl-demo-")
        try:
            with environment(env):
                pipeline = make_pipeline(duckdb_path=path, pipelines_dir=workdir)
                summary = run_load(pipeline, started, record_run=True)
                # a week of pushes in the emulators, then a second load: history to look at
                changed = [e for e in emulators if _change_demo_inventory(e)]
                if changed:
                    print(f"demo: tags moved and deleted, images pushed in {len(changed)} registries; loading again",
                          file=sys.stderr)
                    summary = run_load(pipeline, started, record_run=True)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    finally:
        for emulator in emulators:
            emulator.stop()  # type: ignore[attr-defined]
    print("\n".join(summary.lines()))
    print()
    print(render_report(path, "text"))
    print(NEXT_SQL.format(path=os.path.relpath(path)))
    return EXIT_OK



def cmd_views(args: argparse.Namespace) -> int:
    from analytics import create_views

    pipeline = _pipeline_for(args)
    created = create_views(pipeline)
    print(f"created {len(created)} views in {pipeline.dataset_name}: {', '.join(created)}")
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from .load import DEFAULT_DUCKDB
    from .report import render_report

    path = args.duckdb or (DEMO_DUCKDB if not os.path.exists(DEFAULT_DUCKDB) and os.path.exists(DEMO_DUCKDB) else DEFAULT_DUCKDB)
    if not os.path.exists(path):
        print(f"error: no DuckDB file at {path}; run `registry-etl load ...` or `registry-etl demo` first", file=sys.stderr)
        return EXIT_CONFIG
    print(render_report(path, args.format))
    return EXIT_OK


def cmd_emulate(args: argparse.Namespace) -> int:
    provider = PROVIDERS.get(args.source)
    if provider is None:
        print(f"error: unknown source {args.source}; known: {', '.join(PROVIDERS)}", file=sys.stderr)
        return EXIT_CONFIG
    emulator, env = provider.start_demo_emulator()
    print(f"{provider.title} emulator on {emulator.url} (Ctrl-C to stop). Point the source at it with:")
    for key, value in env.items():
        print(f"  export {key}='{value}'")
    sys.stdout.flush()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    emulator.stop()
    return EXIT_OK


def _common_options(parser: argparse.ArgumentParser, defaults: bool) -> None:
    """--debug and --log-format, accepted before or after the command."""
    suppress = {} if defaults else {"default": argparse.SUPPRESS}
    parser.add_argument("--debug", action="store_true", help="debug logs and tracebacks", **({"default": False} if defaults else suppress))
    parser.add_argument(
        "--log-format", choices=("text", "json"), help="stderr logs as text (default) or one JSON object per line",
        **({"default": "text"} if defaults else suppress),
    )


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {value!r}") from None
    if not 0 <= seconds <= 86400:
        raise argparse.ArgumentTypeError("between 0 and 86400 seconds")
    return seconds


def _destination_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duckdb", help="DuckDB file (default registry_etl.duckdb)")
    parser.add_argument(
        "--destination",
        help="any dlt destination (postgres, filesystem, motherduck, bigquery, snowflake, ...); "
        "default DESTINATION_TYPE, else duckdb; its settings come from dlt's config",
    )
    parser.add_argument("--pipelines-dir", help="where dlt keeps the pipeline's local state")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="registry-etl", description=__doc__,
        epilog="exit codes: 0 ok, 1 other failure, 2 configuration, 3 credentials refused, 4 not found, "
        "5 registry kept failing, 6 loaded in part, 75 another load of the dataset is running or another process "
        "holds the DuckDB file (try again later, or --wait)",
    )
    _common_options(parser, defaults=True)
    common = argparse.ArgumentParser(add_help=False)
    _common_options(common, defaults=False)
    sub = parser.add_subparsers(dest="command", required=True)

    load = sub.add_parser("load", help="load one or more registries into the dataset", parents=[common])
    load.add_argument("sources", nargs="+", metavar="SOURCE", help=f"one of: {', '.join(PROVIDERS)}")
    _destination_options(load)
    load.add_argument("--full-refresh", action="store_true", help="drop what these sources loaded and load anew")
    load.add_argument("--quiet", action="store_true", help="no progress lines")
    load.add_argument(
        "--wait", type=_seconds, default=0.0, metavar="SECONDS",
        help="when another load of the dataset runs, or another process (a notebook) holds the DuckDB "
        "file, wait up to SECONDS for it before giving up with exit code 75 (default 0: give up at once)",
    )
    load.set_defaults(func=cmd_load)

    status = sub.add_parser("status", help="the last runs recorded in the dataset, with their outcome", parents=[common])
    _destination_options(status)
    status.add_argument("--limit", type=int, default=10, help="how many runs (default 10)")
    status.add_argument("--format", choices=("text", "json"), default="text")
    status.set_defaults(func=cmd_status)

    views = sub.add_parser("views", help="(re)create the analytics views in the dataset", parents=[common])
    _destination_options(views)
    views.set_defaults(func=cmd_views)

    demo = sub.add_parser("demo", help="load the built-in emulators into demo.duckdb and print a report", parents=[common])
    demo.add_argument("--duckdb", help="DuckDB file (default demo.duckdb)")
    demo.set_defaults(func=cmd_demo)

    report = sub.add_parser("report", help="headline answers from a loaded DuckDB file", parents=[common])
    report.add_argument("--duckdb", help="DuckDB file (default registry_etl.duckdb, else demo.duckdb)")
    report.add_argument("--format", choices=("text", "json", "csv"), default="text")
    report.set_defaults(func=cmd_report)

    emulate = sub.add_parser("emulate", help="run a registry emulator on loopback until stopped", parents=[common])
    emulate.add_argument("source", metavar="SOURCE")
    emulate.set_defaults(func=cmd_emulate)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.debug, args.log_format)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return _report_error(args, "interrupted", EXIT_INTERRUPTED, "interrupted")
    except Exception as exc:
        return _fail(exc, args)


if __name__ == "__main__":
    sys.exit(main())
