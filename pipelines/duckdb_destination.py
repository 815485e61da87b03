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
  CPU) only to fail on a file path and take the path as it is. A string without `://` is never
  a URL, so `RegistryDuckDbCredentials` takes the path straight away.
- `capabilities()` without a configuration resolves one (credentials, config files,
  environment) only to pass it to `adjust_capabilities`, which dlt's duckdb does not override
  (it reads the naming convention alone): a pipeline does that about a dozen times per run.
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple, Type

from dlt.common.configuration import configspec
from dlt.common.destination import DestinationCapabilitiesContext
from dlt.common.destination.reference import Destination, DestinationReference
from dlt.common.normalizers.naming import NamingConvention
from dlt.destinations import duckdb
from dlt.destinations.impl.duckdb.configuration import DuckDbClientConfiguration, DuckDbCredentials
from dlt.destinations.impl.duckdb.duck import DuckDbClient
from dlt.destinations.sql_jobs import SqlMergeFollowupJob

ROWID = "rowid"


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
    """dlt's DuckDB job client; merge follow-up jobs from `SpillableMergeJob`."""

    def _create_merge_followup_jobs(self, table_chain: Sequence[Any]) -> List[Any]:
        return [SpillableMergeJob.from_table_chain(table_chain, self.sql_client)]


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
