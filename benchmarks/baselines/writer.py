"""What every naive baseline shares: rows per table as tuples, inserted straight into DuckDB as
Arrow tables every `FLUSH_ROWS` rows (no dlt, no merge, no history), and the few value
conversions a short script needs (API times as UTC datetimes).

A baseline declares its tables as Arrow schemas, `add`s tuples in schema order and returns
`close()`: the rows written per table.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Dict, List, Mapping, Optional, Tuple

import duckdb
import pyarrow as pa

FLUSH_ROWS = 50_000
TS = pa.timestamp("us", tz="UTC")

# the tables every baseline writes the same way
KEY = [("registry", pa.string()), ("repository", pa.string())]
TAGS = pa.schema(KEY + [("tag", pa.string()), ("digest", pa.string())])
LAYERS = pa.schema(
    KEY + [("image_digest", pa.string()), ("position", pa.int64()), ("digest", pa.string()), ("size_bytes", pa.int64()), ("media_type", pa.string())]
)
CHILDREN = pa.schema(
    KEY + [("image_digest", pa.string()), ("position", pa.int64()), ("digest", pa.string()), ("media_type", pa.string()),
           ("platform_os", pa.string()), ("platform_arch", pa.string())]
)


class Writer:
    """Rows per table; flushed to DuckDB as Arrow tables every FLUSH_ROWS rows.

    Args:
        path: The DuckDB file (created, or appended to).
        schemas: Table name -> Arrow schema; each table is created from it.
    """

    def __init__(self, path: str, schemas: Mapping[str, pa.Schema]) -> None:
        self.schemas = dict(schemas)
        self.con = duckdb.connect(path)
        self.rows: Dict[str, List[tuple]] = {name: [] for name in self.schemas}
        self.totals: Dict[str, int] = {name: 0 for name in self.schemas}
        for name, schema in self.schemas.items():
            self.con.register("empty_arrow", schema.empty_table())
            self.con.execute(f"CREATE TABLE IF NOT EXISTS {name} AS SELECT * FROM empty_arrow")
            self.con.unregister("empty_arrow")

    def add(self, table: str, row: tuple) -> None:
        rows = self.rows[table]
        rows.append(row)
        if len(rows) >= FLUSH_ROWS:
            self.flush(table)

    def flush(self, table: str) -> None:
        rows = self.rows[table]
        if not rows:
            return
        schema = self.schemas[table]
        columns = list(zip(*rows))
        arrow = pa.Table.from_arrays([pa.array(col, type=f.type) for col, f in zip(columns, schema)], schema=schema)
        self.con.register("batch_arrow", arrow)
        self.con.execute(f"INSERT INTO {table} SELECT * FROM batch_arrow")
        self.con.unregister("batch_arrow")
        self.totals[table] += len(rows)
        self.rows[table] = []

    def close(self) -> Dict[str, int]:
        """Flush what is left, close the file; returns the rows written per table."""
        for table in self.schemas:
            self.flush(table)
        self.con.close()
        return self.totals


def utc(value: Optional[datetime]) -> Optional[datetime]:
    """An aware datetime in UTC (botocore's are in the local zone)."""
    return value.astimezone(timezone.utc) if value is not None else None


def parse_time(value: Any) -> Optional[datetime]:
    """An API time: RFC 3339 text (any number of fraction digits, `Z`), or epoch milliseconds."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value / 1000.0, tz=timezone.utc)
    return datetime.fromisoformat(value).astimezone(timezone.utc)


def to_int(value: Any) -> Optional[int]:
    """An integer the API may send as a string (`"123"`)."""
    return None if value is None or value == "" else int(value)


def add_manifest_rows(writer: Writer, registry: str, repository: str, digest: str, manifest: Dict[str, Any]) -> Tuple[int, int]:
    """The `layers` and `children` rows of one parsed manifest; returns (layers, children)."""
    layers = manifest.get("layers") or []
    children = manifest.get("manifests") or []
    for position, layer in enumerate(layers):
        writer.add("layers", (registry, repository, digest, position, layer.get("digest"), layer.get("size"), layer.get("mediaType")))
    for position, child in enumerate(children):
        platform = child.get("platform") or {}
        writer.add(
            "children",
            (registry, repository, digest, position, child.get("digest"), child.get("mediaType"), platform.get("os"), platform.get("architecture")),
        )
    return len(layers), len(children)
