"""SQL views over the unified tables: the common answers without writing joins.

Each view lives in its own `.sql` file next to this module; the file's leading comment says the
question it answers (and becomes the view's `COMMENT`). The SQL is plain enough to run on DuckDB
and PostgreSQL alike (no engine-only syntax), so the same files serve every destination.

The files name the tables and views they read as placeholders (`{images}`, `{image_sizes}`) and
their parameters as `{stale_days}`, `{tag_moves_days}`, `{keep_last}`. `create_views()` fills
them in: a base table becomes a projection of exactly the columns the views use (a column the
destination lacks, or a whole table no load has created yet, reads as typed NULLs), so the views
can be created on any dataset, even an empty one, and simply return fewer rows.

`create_views(..., temporary=True)` creates them as temporary views instead: that works on a
DuckDB file opened read-only (`duckdb.connect(path, read_only=True)`), so a notebook or a report
never takes the write lock a scheduled load needs.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Set, Tuple, Union

import pyarrow as pa

from sources.model import IMAGE_LAYERS, IMAGE_MANIFESTS, IMAGES, REPOSITORIES, TAGS, TIMESTAMP

log = logging.getLogger("registry_etl.analytics")

DEFAULT_DATASET = "registry"

# Views in dependency order: a view reads only base tables and views listed before it.
VIEW_NAMES: Tuple[str, ...] = (
    "image_blobs",
    "image_sizes",
    "image_unit_members",
    "image_units",
    "repository_storage",
    "registry_storage",
    "shared_layers",
    "tag_history",
    "tag_moves",
    "untagged_images",
    "stale_images",
    "retention_candidates",
    "cleanup_candidates",
    "cleanup_summary",
    "storage_growth",
)

DEFAULT_PARAMETERS: Dict[str, int] = {
    # a tag that moved in the last month is "moving now"; all-time counts sit next to it
    "tag_moves_days": 30,
    # a quarter without a push or a pull is the usual threshold of registry lifecycle rules
    "stale_days": 90,
    # ECR lifecycle examples and most CI setups keep the last 10 images
    "keep_last": 10,
}

_SQL_TYPES = {pa.string(): "VARCHAR", pa.int64(): "BIGINT", pa.bool_(): "BOOLEAN", TIMESTAMP: "TIMESTAMP WITH TIME ZONE"}

# The base tables and the columns the views may read (the contract in sources/model.py; scd2
# adds the validity columns to `tags`).
BASE_TABLES: Dict[str, List[Tuple[str, str]]] = {
    table.name: [(name, _SQL_TYPES[typ]) for name, typ in table.columns]
    for table in (REPOSITORIES, IMAGES, IMAGE_LAYERS, IMAGE_MANIFESTS, TAGS)
}
BASE_TABLES[TAGS.name] += [("valid_from", "TIMESTAMP WITH TIME ZONE"), ("valid_to", "TIMESTAMP WITH TIME ZONE")]

# dlt destinations that write files, not tables a view could select from
FILE_DESTINATIONS = ("filesystem",)

_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


@dataclass(frozen=True)
class View:
    name: str
    sql: str  # the SELECT with placeholders
    question: str  # the first line of the leading comment, without the view name

    @property
    def placeholders(self) -> Set[str]:
        return set(_PLACEHOLDER.findall(self.sql))


def _read_view(name: str) -> View:
    text = resources.files(__name__).joinpath(f"{name}.sql").read_text(encoding="utf-8")
    first = text.splitlines()[0]
    if not first.startswith(f"-- {name}:"):
        raise ValueError(f"analytics/{name}.sql must start with '-- {name}: <the question it answers>'")
    return View(name, text, first.split(":", 1)[1].strip())


def views() -> List[View]:
    """Every view, in the order they must be created."""
    return [_read_view(name) for name in VIEW_NAMES]


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _base_reference(dataset: str, table: str, present: Optional[Set[str]]) -> str:
    """A projection of `table` with every contract column; NULLs for what the destination lacks."""
    columns = BASE_TABLES[table]
    if present is None:  # the table does not exist (yet): an empty relation of the right shape
        select = ", ".join(f"CAST(NULL AS {typ}) AS {quote(name)}" for name, typ in columns)
        return f"(SELECT {select} WHERE 1 = 0)"
    select = ", ".join(
        quote(name) if name in present else f"CAST(NULL AS {typ}) AS {quote(name)}" for name, typ in columns
    )
    return f"(SELECT {select} FROM {quote(dataset)}.{quote(table)})"


def render(
    view: View,
    dataset: str = DEFAULT_DATASET,
    *,
    tables: Optional[Mapping[str, Set[str]]] = None,
    temporary: bool = False,
    **parameters: int,
) -> str:
    """The SELECT of `view` with its placeholders filled in.

    Args:
        view: the view to render.
        dataset: the schema holding the base tables (and the views, unless `temporary`).
        tables: columns present per base table in the destination; a table missing from the
            mapping reads as empty. None assumes every table has every contract column.
        temporary: views are referenced unqualified (temporary views live in the session).
        **parameters: overrides of DEFAULT_PARAMETERS.
    """
    values = _parameters(parameters)
    replacements: Dict[str, str] = {}
    for name in view.placeholders:
        if name in BASE_TABLES:
            present = set(c for c, _ in BASE_TABLES[name]) if tables is None else tables.get(name)
            replacements[name] = _base_reference(dataset, name, present)
        elif name in VIEW_NAMES:
            replacements[name] = quote(name) if temporary else f"{quote(dataset)}.{quote(name)}"
        elif name in values:
            replacements[name] = str(values[name])
        else:
            raise ValueError(f"analytics/{view.name}.sql uses an unknown placeholder {{{name}}}")
    return _PLACEHOLDER.sub(lambda m: replacements[m.group(1)], view.sql)


def _parameters(overrides: Mapping[str, Any]) -> Dict[str, int]:
    unknown = set(overrides) - set(DEFAULT_PARAMETERS)
    if unknown:
        raise TypeError(f"unknown view parameters: {', '.join(sorted(unknown))}")
    values = dict(DEFAULT_PARAMETERS)
    for name, value in overrides.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a whole number >= 0, got {value!r}")
        values[name] = value
    return values


# ---- executing on a destination


class _Executor:
    """Runs statements on whatever the caller holds: a dlt pipeline or sql client, a DuckDB
    connection or file path, or a DB-API connection (psycopg2). `duckdb` says whether the
    engine is DuckDB (stored views are compared, DDL runs in one transaction)."""

    def __init__(
        self,
        run: Callable[[str], Optional[List[tuple]]],
        close: Callable[[], None] = lambda: None,
        duckdb: bool = False,
    ):
        self.run = run
        self.close = close
        self.duckdb = duckdb

    def query(self, sql: str) -> List[tuple]:
        return list(self.run(sql) or [])


def _executor(target: Any) -> Tuple[_Executor, Optional[str]]:
    """An executor for `target` and the dataset it implies (None when it implies none)."""
    if isinstance(target, (str, Path)):
        import duckdb

        conn = duckdb.connect(str(target))
        return _Executor(lambda sql: conn.execute(sql).fetchall(), conn.close, duckdb=True), None
    if hasattr(target, "sql_client") and hasattr(target, "dataset_name"):  # a dlt pipeline
        manager = target.sql_client()
        client = manager.__enter__()
        return (
            _Executor(client.execute_sql, lambda: manager.__exit__(None, None, None), duckdb=_is_duckdb_client(client)),
            target.dataset_name,
        )
    if hasattr(target, "execute_sql"):  # a dlt sql client (already open)
        return _Executor(target.execute_sql, duckdb=_is_duckdb_client(target)), getattr(target, "dataset_name", None)
    if type(target).__module__.startswith(("duckdb", "_duckdb")):
        return _Executor(lambda sql: target.execute(sql).fetchall(), duckdb=True), None
    if hasattr(target, "cursor"):  # DB-API 2 (psycopg2 and friends)

        def run(sql: str) -> Optional[List[tuple]]:
            with target.cursor() as cursor:
                cursor.execute(sql)
                return cursor.fetchall() if cursor.description else None

        return _Executor(run, getattr(target, "commit", lambda: None)), None
    raise TypeError(
        "create_views() takes a dlt pipeline, a dlt sql client, a DuckDB connection or file path,"
        f" or a DB-API connection; got {type(target).__name__}"
    )


def _is_duckdb_client(client: Any) -> bool:
    """Whether a dlt sql client talks to DuckDB (dlt's duckdb and motherduck clients)."""
    capabilities = getattr(client, "capabilities", None)
    return getattr(capabilities, "sqlglot_dialect", None) == "duckdb"


def stored_views_match(executor: _Executor, dataset: str, rendered: List[Tuple[View, str]]) -> bool:
    """Whether `dataset` already holds every view exactly as `rendered` would create it (DuckDB).

    DuckDB stores a view as `CREATE VIEW <name> AS <query>;` with the query printed by its own
    parser (`duckdb_views().sql`), and `json_deserialize_sql(json_serialize_sql(q))` prints `q`
    the same way without creating anything; the comment must be the view's question too. Any
    doubt (another engine, a view missing or different, an error) answers False: recreate.
    """
    if not executor.duckdb:
        return False
    try:
        stored = {
            name: (sql, comment)
            for name, sql, comment in executor.query(
                "SELECT view_name, sql, comment FROM duckdb_views()"
                f" WHERE database_name = current_database() AND schema_name = {_literal(dataset)}"
                " AND NOT internal AND NOT temporary"
            )
        }
        if any(view.name not in stored for view, _ in rendered):
            return False
        printed = executor.query(
            "SELECT " + ", ".join(f"json_deserialize_sql(json_serialize_sql({_literal(select)}))" for _, select in rendered)
        )[0]
    except Exception as exc:  # e.g. a DuckDB without these functions
        log.debug("could not compare the stored views: %s", exc)
        return False
    for (view, _), query in zip(rendered, printed):
        sql, comment = stored[view.name]
        if comment != view.question or not isinstance(sql, str) or not sql.endswith(f" AS {query};"):
            return False
    return True


def existing_columns(executor: _Executor, dataset: str) -> Dict[str, Set[str]]:
    """Columns per base table that exist in `dataset` (information_schema: DuckDB and Postgres)."""
    names = ", ".join(_literal(name) for name in BASE_TABLES)
    rows = executor.query(
        "SELECT table_name, column_name FROM information_schema.columns"
        f" WHERE table_schema = {_literal(dataset)} AND table_name IN ({names})"
        " AND table_catalog = current_database()"
    )
    found: Dict[str, Set[str]] = {}
    for table, column in rows:
        found.setdefault(table, set()).add(column)
    return found


def create_views(
    target: Any,
    dataset: Optional[str] = None,
    *,
    temporary: bool = False,
    tag_moves_days: Optional[int] = None,
    stale_days: Optional[int] = None,
    keep_last: Optional[int] = None,
) -> List[str]:
    """Create (or replace) every analytics view in `dataset`.

    Args:
        target: a dlt pipeline (its destination is used), a dlt sql client, a DuckDB connection
            or DuckDB file path, or a DB-API connection such as psycopg2's.
        dataset: the schema holding the unified tables; defaults to the pipeline's dataset, else
            `registry`.
        temporary: create session-local temporary views (unqualified names) instead: works on a
            read-only DuckDB connection and leaves the database untouched.
        tag_moves_days: window of `tag_moves.moves_in_window` (default 30).
        stale_days: age after which `stale_images` lists an image (default 90).
        keep_last: images kept per repository by `retention_candidates` (default 10).

    Returns:
        The names of the views, in creation order: created, or found exactly as they would be
        created (DuckDB: a load that changed no column does not rewrite them).
    """
    parameters = {"tag_moves_days": tag_moves_days, "stale_days": stale_days, "keep_last": keep_last}
    _parameters(parameters)  # fail before touching the database
    destination = getattr(getattr(target, "destination", None), "destination_type", "") or ""
    if destination.rsplit(".", 1)[-1] in FILE_DESTINATIONS:
        # files, not a database: there is nowhere to keep a view (query the files with
        # create_views(duckdb_connection, temporary=True) over views of the files instead)
        log.info("no analytics views on the %s destination", destination)
        return []
    executor, implied = _executor(target)
    dataset = dataset or implied or DEFAULT_DATASET
    transaction = False
    try:
        tables = existing_columns(executor, dataset)
        missing = sorted(set(BASE_TABLES) - set(tables))
        if missing:
            log.info("tables not loaded yet in %s (views read them as empty): %s", dataset, ", ".join(missing))
        created = []
        rendered = [(view, render(view, dataset, tables=tables, temporary=temporary, **parameters)) for view in views()]
        if not temporary and stored_views_match(executor, dataset, rendered):
            log.info("the %d analytics views in %s are up to date", len(rendered), dataset)
            return [view.name for view, _ in rendered]
        # DuckDB: one transaction, not one commit (and WAL write) per statement
        transaction = executor.duckdb and not temporary and _begin(executor)
        if not temporary:
            executor.run(f"CREATE SCHEMA IF NOT EXISTS {quote(dataset)}")
            # drop first, dependants first: Postgres cannot CREATE OR REPLACE a view whose columns change
            for view, _ in reversed(rendered):
                executor.run(f"DROP VIEW IF EXISTS {quote(dataset)}.{quote(view.name)}")
        for view, select in rendered:
            if temporary:
                name = quote(view.name)
                executor.run(f"CREATE OR REPLACE TEMPORARY VIEW {name} AS\n{select}")
            else:
                name = f"{quote(dataset)}.{quote(view.name)}"
                executor.run(f"CREATE VIEW {name} AS\n{select}")
            executor.run(f"COMMENT ON VIEW {name} IS {_literal(view.question)}")
            created.append(view.name)
        if transaction:
            executor.run("COMMIT")
            transaction = False
        log.info("created %d analytics views in %s", len(created), "the session" if temporary else dataset)
        return created
    except BaseException:
        if transaction:
            try:
                executor.run("ROLLBACK")
            except Exception as exc:
                log.debug("rollback failed: %s", exc)
        raise
    finally:
        executor.close()


def _begin(executor: _Executor) -> bool:
    """Start a transaction (DuckDB); False when one cannot start (e.g. the caller's connection
    is in one already), and the statements run as they come."""
    try:
        executor.run("BEGIN TRANSACTION")
        return True
    except Exception as exc:
        log.debug("views created without a transaction of their own: %s", exc)
        return False


def connect_readonly(path: Union[str, Path], dataset: str = DEFAULT_DATASET, **parameters: int) -> Any:
    """Open a DuckDB file read-only, with every view available as a temporary view.

    Never takes the write lock a load needs; the views come from this code (not from whatever
    version created the stored ones) and take `parameters` (tag_moves_days, stale_days, keep_last).
    Query them unqualified: `SELECT * FROM image_sizes`.
    """
    import duckdb

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no DuckDB file at {path}: run a load (or `make demo`) first")
    conn = duckdb.connect(str(path), read_only=True)
    try:
        create_views(conn, dataset, temporary=True, **parameters)
    except Exception:
        conn.close()
        raise
    return conn


__all__ = [
    "DEFAULT_DATASET",
    "DEFAULT_PARAMETERS",
    "VIEW_NAMES",
    "View",
    "connect_readonly",
    "create_views",
    "render",
    "views",
]
