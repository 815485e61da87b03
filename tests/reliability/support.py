"""Helpers of the reliability suite: emulators started from the case table, in-process and
subprocess loads, and whole-table snapshots of a DuckDB file for exact comparisons."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional, Tuple

import duckdb

from emulators.base import Emulator, Faults
from emulators.inventory import Inventory
from pipelines.load import environment, run_load
from tests.reliability.cases import SourceCase
from tests.support import ROOT, new_pipeline

# what the suite did, printed at the end of a run (`pytest tests/reliability`, without -n)
FIGURES: Counter = Counter()

DATASET = "registry"
# columns that differ between two loads of the same data by design
VOLATILE_COLUMNS = {"valid_from", "seen_at"}


@contextmanager
def serving(case: SourceCase, inventory: Inventory, faults: Optional[Faults] = None) -> Iterator[Tuple[Emulator, Dict[str, str]]]:
    """The case's emulator over `inventory`, and the env for the source (set while inside)."""
    emulator, env = case.start(inventory, faults)
    try:
        with environment_unsetting(env):
            yield emulator, env
    finally:
        emulator.clear_hooks()
        emulator.stop()


@contextmanager
def environment_unsetting(values: Dict[str, str]) -> Iterator[None]:
    """Like `pipelines.load.environment`, but an empty value unsets the variable (an empty
    AWS_PROFILE is not "no profile" to boto3)."""
    with environment({key: (value if value != "" else None) for key, value in values.items()}):
        yield


def load(tmp_path, case: SourceCase, name: str = "registry_etl.duckdb", **options: Any):
    """One in-process load of `case` into tmp_path/name; returns (pipeline, request counter)."""
    pipeline = new_pipeline(tmp_path, name)
    counter: Counter = Counter()
    run_load(pipeline, [case.provider], source_options={case.provider: {"request_counter": counter, **options}})
    return pipeline, counter


def db_path(pipeline) -> str:
    return pipeline.destination_client().config.credentials.database  # type: ignore[attr-defined]


def snapshot(path: str, volatile: Tuple[str, ...] = ()) -> Dict[str, Any]:
    """Every table of the dataset (dlt's own tables and columns left out) as sorted rows, with
    its column names. Tag validity becomes `is_open`, so two loads of the same history compare
    equal whatever their load times."""
    skip = VOLATILE_COLUMNS | set(volatile)
    out: Dict[str, Any] = {}
    with duckdb.connect(path, read_only=True) as con:
        tables = [
            t for (t,) in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = ? AND table_type = 'BASE TABLE' ORDER BY 1", [DATASET]
            ).fetchall()
            if not t.startswith("_dlt")
        ]
        for table in tables:
            columns = [
                c for (c,) in con.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ?"
                    " ORDER BY ordinal_position", [DATASET, table]
                ).fetchall()
                if not c.startswith("_dlt") and c not in skip
            ]
            select = ", ".join('("valid_to" IS NULL) AS is_open' if c == "valid_to" else f'"{c}"' for c in columns)
            rows = con.execute(f'SELECT {select} FROM "{DATASET}"."{table}"').fetchall()
            out[table] = (tuple(columns), sorted(rows, key=repr))
    return out


def diff(a: Dict[str, Any], b: Dict[str, Any]) -> List[str]:
    """A short human description of how two snapshots differ (empty when equal)."""
    problems = []
    for table in sorted(set(a) | set(b)):
        if table not in a or table not in b:
            problems.append(f"table {table} only in {'first' if table in a else 'second'}")
            continue
        (cols_a, rows_a), (cols_b, rows_b) = a[table], b[table]
        if cols_a != cols_b:
            problems.append(f"{table}: columns differ: {sorted(set(cols_a) ^ set(cols_b))}")
            continue
        ca, cb = Counter(rows_a), Counter(rows_b)
        missing, extra = ca - cb, cb - ca
        if missing or extra:
            problems.append(f"{table}: {sum(missing.values())} rows missing, {sum(extra.values())} extra; e.g. {list((missing or extra))[:2]}")
    return problems


def duplicates(path: str) -> Dict[str, int]:
    """Rows sharing a primary key (tags: two open rows of one tag), per table."""
    checks = {
        "repositories": "SELECT count(*) - count(DISTINCT (provider, registry, repository)) FROM registry.repositories",
        "images": "SELECT count(*) - count(DISTINCT (provider, registry, repository, digest)) FROM registry.images",
        "images__layers": "SELECT count(*) - count(DISTINCT (provider, registry, repository, image_digest, position)) FROM registry.images__layers",
        "images__manifests": "SELECT count(*) - count(DISTINCT (provider, registry, repository, image_digest, position)) FROM registry.images__manifests",
        "tags": "SELECT count(*) - count(DISTINCT tag_key) FROM registry.tags WHERE valid_to IS NULL",
        "tag_versions": "SELECT count(*) - count(DISTINCT (tag_key, tag_version, valid_to)) FROM registry.tags",
    }
    out = {}
    with duckdb.connect(path, read_only=True) as con:
        for name, sql in checks.items():
            try:
                out[name] = con.execute(sql).fetchone()[0]
            except duckdb.CatalogException:
                out[name] = 0
    return out


def cli(*args: str, env: Dict[str, str], timeout: float = 120, **popen: Any) -> subprocess.CompletedProcess:
    """`python -m pipelines.cli …` in a subprocess with exactly the env given (plus PATH)."""
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], capture_output=True, text=True,
                          env=cli_env(env), timeout=timeout, cwd=ROOT, **popen)


def cli_env(env: Dict[str, str], extra_path: Optional[str] = None) -> Dict[str, str]:
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("SOURCES__", "AWS_", "RUNTIME__", "DESTINATION", "PYTHONPATH"))}
    base.update({k: v for k, v in env.items() if v != ""})
    base["PYTHONPATH"] = os.pathsep.join(p for p in (extra_path, ROOT) if p)
    base["PYTHONUNBUFFERED"] = "1"
    return base
