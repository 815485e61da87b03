"""dlt's DuckDB destination with a merge whose de-duplication can spill to disk.

dlt's `delete-insert` merge copies the staged rows of a table with a primary key through
`ROW_NUMBER() OVER (PARTITION BY <key>)`, keeping one row per key: the guard against the same
key staged twice (a load job re-run after a crash inserts its file into staging again). DuckDB's
window operator cannot work within a memory limit: with `memory_limit = "256MB"` it failed with
`OutOfMemoryException` on the 1.15 M rows of `images__layers` (200,000 images), so a limit that
bounds the load's RSS would make a larger registry fail instead of spill.

Here the same rows are chosen with `rowid IN (SELECT min(rowid) … GROUP BY <key>)`: one row
per key (the first staged, where dlt's pick is arbitrary), through a grouped aggregate and a
semi join, both of which DuckDB spills to its temp directory. Everything else is dlt's own merge
SQL; the factory keeps dlt's `duckdb` destination type, name and config section, so
`[destination.duckdb]` settings and `DESTINATION__DUCKDB__*` apply unchanged.
Measured in benchmarks/README.md ("Load step").

Two costs of dlt's duckdb that every run pays, each in the fixed cost of a no-op load
(benchmarks/README.md, "Fixed cost of a run"), are cut here without changing what is configured:

- dlt parses a credentials string first as an SQLAlchemy URL, importing SQLAlchemy (~0.3 s of
  CPU) only to fail on a file path and take the path as it is; and it renders them as an
  SQLAlchemy URL in every load's step info. A string without `://` is never a URL, so
  `RegistryDuckDbCredentials` takes the path straight away, and renders a plain path with
  dlt's own URL shim (the same string).
- `capabilities()` without a configuration resolves one (credentials, config files,
  environment) only to pass it to `adjust_capabilities`, which dlt's duckdb does not override
  (it reads the naming convention alone): a pipeline does that about a dozen times per run.
- DuckDB's Python client imports pandas (~0.35 s of CPU) the first time a query binds a
  parameter, whatever its type, and dlt binds them in every run (the `SET` of each new
  connection, the state query). Values with an exact SQL literal (None, bool, int, finite
  float, str, datetime) are written into the statement instead (`sql_literal`), escaped as
  DuckDB reads them back; any other value binds as before.
"""

from __future__ import annotations

import string

import math
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Type

from dlt.common.configuration import configspec
from dlt.common.destination import DestinationCapabilitiesContext
from dlt.common.destination.reference import Destination, DestinationReference
from dlt.common.normalizers.naming import NamingConvention
from dlt.destinations import duckdb
from dlt.destinations.impl.duckdb.configuration import (
    DuckDbClientConfiguration,
    DuckDbConnectionPool,
    DuckDbCredentials,
)
from dlt.destinations.impl.duckdb.duck import DuckDbClient
from dlt.destinations.impl.duckdb.sql_client import DuckDbSqlClient
from dlt.destinations.sql_jobs import SqlMergeFollowupJob

ROWID = "rowid"
# characters SQLAlchemy's URL renders as they are (a database path made of these alone)
_PLAIN_PATH = frozenset(string.ascii_letters + string.digits + "/._-~+ ")


class SpillableMergeJob(SqlMergeFollowupJob):
    """dlt's merge SQL, with the primary-key de-duplication as a grouped semi join."""

    @classmethod
    def gen_select_from_dedup_sql(
        cls,
        table_name: str,
        primary_keys: Sequence[str],
        columns: Sequence[str],
        dedup_sort: Optional[Tuple[str, Any]] = None,
        condition: Optional[str] = None,
        condition_columns: Optional[Sequence[str]] = None,
        skip_dedup: bool = False,
    ) -> str:
        # a sort column picks the row by value, and a column named rowid would hide DuckDB's
        # row id: dlt's window then (neither happens with this project's tables)
        shadowed = any(c.strip('"').lower() == ROWID for c in columns)
        if skip_dedup or dedup_sort is not None or not primary_keys or shadowed:
            return super().gen_select_from_dedup_sql(
                table_name, primary_keys, columns, dedup_sort, condition, condition_columns, skip_dedup
            )
        # the condition applies after the de-duplication, as in dlt's `_dlt_dedup_rn = 1 AND (…)`
        return (
            f"SELECT {', '.join(columns)} FROM {table_name} WHERE {ROWID} IN"
            f" (SELECT min({ROWID}) FROM {table_name} GROUP BY {', '.join(primary_keys)})"
            f" AND ({condition or '1 = 1'})"
        )


class SpillableMergeDuckDbClient(DuckDbClient):
    """dlt's DuckDB job client; merge follow-up jobs from `SpillableMergeJob`, its sql client a
    `LiteralArgsDuckDbSqlClient`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if type(self.sql_client) is DuckDbSqlClient:
            # dlt's __init__ builds the sql client itself; the subclass adds no state
            self.sql_client.__class__ = LiteralArgsDuckDbSqlClient

    def _create_merge_followup_jobs(self, table_chain: Sequence[Any]) -> List[Any]:
        return [SpillableMergeJob.from_table_chain(table_chain, self.sql_client)]


def sql_literal(value: Any) -> Optional[str]:
    """`value` as a DuckDB SQL literal that reads back as exactly the value a bound parameter
    would give (same type and value), or None when there is no such literal here."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"CAST('{value!r}' AS DOUBLE)" if math.isfinite(value) else None
    if isinstance(value, str):
        # standard SQL strings: a quote is doubled, nothing else is special (no backslash escapes)
        return "'" + value.replace("'", "''") + "'" if "\x00" not in value else None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return f"CAST('{value.isoformat(sep=' ')}' AS TIMESTAMP)"
        return f"CAST('{value.astimezone(timezone.utc).isoformat(sep=' ')}' AS TIMESTAMP WITH TIME ZONE)"
    return None


def inline_args(query: str, args: Sequence[Any]) -> Optional[str]:
    """dlt's `%s` placeholders of `query` replaced by the literals of `args`, in order; None when
    the count differs or a value has no literal (then it is bound as dlt binds it)."""
    parts = query.split("%s")
    if len(parts) != len(args) + 1:
        return None
    literals = [sql_literal(arg) for arg in args]
    if any(literal is None for literal in literals):
        return None
    out = [parts[0]]
    for literal, part in zip(literals, parts[1:]):
        out += [literal, part]  # type: ignore[list-item]
    return "".join(out)


class LiteralArgsDuckDbSqlClient(DuckDbSqlClient):
    """dlt's DuckDB sql client; arguments with an exact literal are written into the statement."""

    @contextmanager
    def execute_query(self, query: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
        if args and not kwargs and isinstance(query, str):
            inlined = inline_args(query, args)
            if inlined is not None:
                query, args = inlined, ()
        with super().execute_query(query, *args, **kwargs) as cursor:
            yield cursor


class LiteralConfigPool(DuckDbConnectionPool):
    """dlt's DuckDB connection pool; its `SET` statements carry literals (`sql_literal`)."""

    @staticmethod
    def _apply_config(conn: Any, scope: Any, config: Dict[str, Any]) -> None:
        import duckdb as duckdb_module

        for key, value in (config or {}).items():
            literal = sql_literal(value) if not isinstance(value, datetime) else None
            if literal is None:  # dlt binds it
                DuckDbConnectionPool._apply_config(conn, scope, {key: value})
                continue
            try:
                conn.execute(f"SET {scope} {key} = {literal}")
            except duckdb_module.CatalogException:
                # as dlt: a search_path naming a schema that does not exist yet is fine
                if key != "search_path":
                    raise


@configspec(init=False)
class RegistryDuckDbCredentials(DuckDbCredentials):
    """dlt's DuckDB credentials; a file path is taken as it is, without trying it as a URL."""

    def parse_native_representation(self, native_value: Any) -> None:
        # SQLAlchemy's make_url needs `<driver>://`: without it, dlt's parse fails and falls back
        # to the path anyway (importing SQLAlchemy for that); a connection or a URL goes to dlt
        if isinstance(native_value, str) and "://" not in native_value:
            from pathvalidate import is_valid_filepath

            if native_value == ":pipeline:" or is_valid_filepath(native_value, platform="auto"):
                self.database = native_value
                return
        super().parse_native_representation(native_value)

    def on_resolved(self) -> None:
        super().on_resolved()
        self.conn_pool = LiteralConfigPool(self)

    def to_url(self) -> Any:
        # dlt prints the credentials in every load's step info (`str()` renders this URL):
        # SQLAlchemy's URL only for what it would escape; for a plain path dlt's own URL shim
        # renders the same string without importing SQLAlchemy
        database = self.database
        if isinstance(database, str) and set(database) <= _PLAIN_PATH and not (
            self.username or self.password or self.host or self.port or self.query
        ):
            from dlt.common.libs.sql_alchemy_shims import URL

            return URL.create(self.drivername, None, None, None, None, database, {})
        return super().to_url()


@configspec(init=False)
class RegistryDuckDbClientConfiguration(DuckDbClientConfiguration):
    """dlt's DuckDB configuration with `RegistryDuckDbCredentials`."""

    credentials: RegistryDuckDbCredentials = None


class registry_duckdb(duckdb):
    """dlt's `duckdb` destination (same type, name and settings) with `SpillableMergeDuckDbClient`."""

    spec = RegistryDuckDbClientConfiguration

    def capabilities(
        self, config: Optional[Any] = None, naming: Optional[NamingConvention] = None
    ) -> DestinationCapabilitiesContext:
        # dlt resolves a whole configuration when none is given, only for `adjust_capabilities`;
        # duckdb keeps dlt's, which reads the naming convention alone (asserted in tests/ops)
        if config is None and type(self).adjust_capabilities.__func__ is Destination.adjust_capabilities.__func__:  # type: ignore[attr-defined]
            config = self.spec()
        return super().capabilities(config, naming)

    @property
    def destination_type(self) -> str:
        return DestinationReference.normalize_type(f"{duckdb.__module__}.{duckdb.__qualname__}")

    @property
    def client_class(self) -> Type[DuckDbClient]:
        return SpillableMergeDuckDbClient
