"""`registry-etl`: load registries, run the demo, print the report, start emulators."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
from typing import List, Optional

from sources.errors import RedactingFilter, RegistryError

from .catalog import PROVIDERS

log = logging.getLogger("registry_etl")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_AUTH = 3
EXIT_NOT_FOUND = 4
EXIT_API = 5
EXIT_CODES = {"config": EXIT_CONFIG, "auth": EXIT_AUTH, "not_found": EXIT_NOT_FOUND, "api": EXIT_API, "bad_response": EXIT_API}

DEMO_DUCKDB = "demo.duckdb"

NEXT_SQL = """Try next (duckdb {path}):
  SELECT repository, count(*) AS images, sum(size_bytes) AS bytes FROM registry.images GROUP BY ALL ORDER BY bytes DESC LIMIT 10;
  SELECT repository, tag, digest, valid_from, valid_to FROM registry.tags ORDER BY repository, tag, valid_from;
  SELECT digest, count(DISTINCT repository) AS repositories FROM registry.images__layers GROUP BY digest HAVING count(DISTINCT repository) > 1;"""


def _setup_logging(debug: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.WARNING)
    logging.getLogger("registry_etl").setLevel(logging.DEBUG if debug else logging.INFO)
    # dlt logs through its own logger; keep its noise at warnings unless debugging
    logging.getLogger("dlt").setLevel(logging.DEBUG if debug else logging.WARNING)
    for name in ("botocore", "urllib3", "boto3"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _root_cause(exc: BaseException) -> BaseException:
    """dlt wraps source errors in PipelineStepFailed / ResourceExtractionError: find ours."""
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


def _fail(exc: BaseException, debug: bool) -> int:
    cause = _root_cause(exc)
    if debug:
        logging.getLogger("registry_etl").exception("load failed")
    if isinstance(cause, RegistryError):
        print(f"error: {cause}", file=sys.stderr)
        return EXIT_CODES.get(cause.kind, EXIT_FAILED)
    from sources.errors import redact

    message = redact(f"{type(cause).__name__}: {cause}")
    if "ConfigFieldMissingException" in type(cause).__name__ or "ConfigField" in message:
        print(f"error: configuration: {message}", file=sys.stderr)
        return EXIT_CONFIG
    print(f"error: {message}" + ("" if debug else " (run with --debug for the traceback)"), file=sys.stderr)
    return EXIT_FAILED


def cmd_load(args: argparse.Namespace) -> int:
    from .load import make_pipeline, run_load, stderr_progress

    unknown = [p for p in args.sources if p not in PROVIDERS]
    if unknown:
        print(f"error: unknown source(s) {', '.join(unknown)}; known: {', '.join(PROVIDERS)}", file=sys.stderr)
        return EXIT_CONFIG
    pipeline = make_pipeline(
        destination=args.destination,
        duckdb_path=args.duckdb,
        pipelines_dir=args.pipelines_dir,
        progress=None if args.quiet else stderr_progress(),
    )
    summary = run_load(pipeline, args.sources, full_refresh=args.full_refresh)
    print("\n".join(summary.lines()))
    return EXIT_OK


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
                summary = run_load(pipeline, started)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="registry-etl", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="debug logs and tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    load = sub.add_parser("load", help="load one or more registries into the dataset")
    load.add_argument("sources", nargs="+", metavar="SOURCE", help=f"one of: {', '.join(PROVIDERS)}")
    load.add_argument("--duckdb", help="DuckDB file (default registry_etl.duckdb)")
    load.add_argument("--destination", help="any dlt destination name (default duckdb, or DESTINATION_TYPE)")
    load.add_argument("--pipelines-dir", help="where dlt keeps the pipeline's local state")
    load.add_argument("--full-refresh", action="store_true", help="drop what these sources loaded and load anew")
    load.add_argument("--quiet", action="store_true", help="no progress lines")
    load.set_defaults(func=cmd_load)

    demo = sub.add_parser("demo", help="load the built-in emulators into demo.duckdb and print a report")
    demo.add_argument("--duckdb", help="DuckDB file (default demo.duckdb)")
    demo.set_defaults(func=cmd_demo)

    report = sub.add_parser("report", help="headline answers from a loaded DuckDB file")
    report.add_argument("--duckdb", help="DuckDB file (default registry_etl.duckdb, else demo.duckdb)")
    report.add_argument("--format", choices=("text", "json", "csv"), default="text")
    report.set_defaults(func=cmd_report)

    emulate = sub.add_parser("emulate", help="run a registry emulator on loopback until stopped")
    emulate.add_argument("source", metavar="SOURCE")
    emulate.set_defaults(func=cmd_emulate)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.debug)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        return _fail(exc, args.debug)


if __name__ == "__main__":
    sys.exit(main())
