"""The unified data model: every source emits these tables, and only through this module.

Rows are plain dicts while a source builds them; `batch()` turns a page of rows into a
pyarrow table with the contract's types (BIGINT sizes, UTC timestamps) and `emit()` marks it
for its table with the table's dlt hints. Arrow tables skip dlt's per-row normalisation, which
is the difference between ~1k and ~38k images/s (shared/reference/dlt-notes.md).

Fields a table does not know are kept: they become extra TEXT columns (nested values, numbers
and booleans as JSON, times as ISO 8601), so a new API field shows up as a new column instead of
vanishing, and a field that changes type later (a number, then a string) cannot fail a load:
DuckDB would refuse 'abc' in a BIGINT column a first page created. The contract's own columns
are typed by the model. See docs/reliability.md ("Schema drift").
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

import dlt
import pyarrow as pa

log = logging.getLogger("registry_etl.rows")

PROVIDERS = ("ecr", "yandex", "ncp", "swr", "oci")

TIMESTAMP = pa.timestamp("us", tz="UTC")

# dlt column hints per arrow type (dlt would infer them, but spelling them out keeps the
# destination schema identical whatever the first page happened to contain).
_DLT_TYPES = {
    pa.string(): "text",
    pa.int64(): "bigint",
    pa.bool_(): "bool",
    TIMESTAMP: "timestamp",
}


@dataclass(frozen=True)
class Table:
    """One table of the contract: its columns, keys and how dlt writes it."""

    name: str
    columns: Sequence[tuple]  # (name, arrow type)
    primary_key: Sequence[str] = ()
    write_disposition: Any = "merge"
    description: str = ""
    required: Sequence[str] = ()  # non-key columns that may not be NULL
    extra_hints: Mapping[str, Any] = field(default_factory=dict)

    @property
    def arrow_schema(self) -> pa.Schema:
        return pa.schema(
            [pa.field(name, typ, nullable=self.nullable(name)) for name, typ in self.columns]
        )

    def nullable(self, name: str) -> bool:
        return name not in self.primary_key and name not in self.required

    @property
    def column_names(self) -> List[str]:
        return [name for name, _ in self.columns]

    def dlt_columns(self) -> Dict[str, Dict[str, Any]]:
        cols: Dict[str, Dict[str, Any]] = {}
        for name, typ in self.columns:
            col: Dict[str, Any] = {"name": name, "data_type": _DLT_TYPES[typ]}
            col["nullable"] = self.nullable(name)
            if typ == TIMESTAMP:
                col["timezone"] = True
                col["precision"] = 6
            cols[name] = col
        return cols

    def hints(self) -> Any:
        return dlt.mark.make_hints(
            table_name=self.name,
            write_disposition=self.write_disposition,
            primary_key=list(self.primary_key) or None,
            columns=self.dlt_columns(),
            **self.extra_hints,
        )


S, I, B, T = pa.string(), pa.int64(), pa.bool_(), TIMESTAMP
_REPO_KEY = ("provider", "registry", "repository")

REPOSITORIES = Table(
    "repositories",
    [
        ("provider", S), ("registry", S), ("repository", S),
        ("created_at", T), ("updated_at", T), ("image_count", I), ("pull_count", I),
        ("size_bytes", I), ("description", S), ("tag_count", I),
    ],
    primary_key=_REPO_KEY,
    description="One row per repository.",
)

IMAGES = Table(
    "images",
    [
        ("provider", S), ("registry", S), ("repository", S), ("digest", S),
        ("media_type", S), ("artifact_media_type", S), ("size_bytes", I), ("created_at", T),
        ("last_pulled_at", T), ("pull_count", I), ("config_digest", S), ("config_size_bytes", I),
        ("config_media_type", S), ("platform_os", S), ("platform_arch", S), ("platform_variant", S),
        ("layer_count", I), ("child_count", I), ("status", S), ("manifest_size_bytes", I),
    ],
    primary_key=_REPO_KEY + ("digest",),
    description="One row per manifest (by digest) in a repository; size_bytes as the registry reports it.",
)

IMAGE_LAYERS = Table(
    "images__layers",
    [
        ("provider", S), ("registry", S), ("repository", S), ("image_digest", S), ("position", I),
        ("digest", S), ("size_bytes", I), ("media_type", S),
    ],
    primary_key=_REPO_KEY + ("image_digest", "position"),
    description="Layers of a manifest, in manifest order (position 0 is the base layer).",
)

IMAGE_MANIFESTS = Table(
    "images__manifests",
    [
        ("provider", S), ("registry", S), ("repository", S), ("image_digest", S), ("position", I),
        ("digest", S), ("media_type", S), ("platform_os", S), ("platform_arch", S),
        ("platform_variant", S), ("size_bytes", I),
    ],
    primary_key=_REPO_KEY + ("image_digest", "position"),
    description="Child manifests of an index / manifest list, in index order.",
)

# Tags are a snapshot merged with scd2. Each run also emits one "scope" marker row per unit it
# read in full (a whole registry, or one repository when the run is filtered or re-emits only the
# repositories that changed, as ECR does with listing fingerprints). The markers never
# reach the table (`source_filter`), but `destination_scope` uses them so that a run retires only
# rows inside what it read: a partial run leaves the rest of the history alone, and a repository
# whose tags all vanished (or that vanished itself) is still closed by a full run.
# dlt pastes this after `... AND valid_to IS NULL AND` without parentheses: the outer pair keeps
# the OR inside the scope (without it a repository-scoped run retired every row of the repository)
TAG_SCOPE = (
    "(({table}.provider, {table}.registry) IN"
    " (SELECT provider, registry FROM {staging_table} WHERE scope = 'registry')"
    " OR ({table}.provider, {table}.registry, {table}.repository) IN"
    " (SELECT provider, registry, repository FROM {staging_table} WHERE scope = 'repository'))"
)

TAGS = Table(
    "tags",
    [
        ("tag_key", S), ("provider", S), ("registry", S), ("repository", S), ("tag", S),
        ("digest", S), ("scope", S), ("tag_version", S),
    ],
    write_disposition={
        "disposition": "merge",
        "strategy": "scd2",
        "validity_column_names": ["valid_from", "valid_to"],
        # our own version hash: one key column that cannot collide (dlt joins compound keys
        # without a separator) and that arrow tables can carry without dlt hashing rows
        "row_version_column_name": "tag_version",
        "source_filter": "tag IS NOT NULL",
        "destination_scope": TAG_SCOPE,
    },
    required=("tag_version",),
    description="Tag -> digest with history: valid_to NULL is the current mapping.",
)

LOAD_PROBLEMS = Table(
    "load_problems",
    [
        ("provider", S), ("registry", S), ("repository", S), ("call", S), ("object", S),
        ("reason", S), ("seen_at", T),
    ],
    write_disposition="append",
    description="Records loaded only in part, with the call and the reason.",
)

UNIFIED_TABLES = (REPOSITORIES, IMAGES, IMAGE_LAYERS, IMAGE_MANIFESTS, TAGS, LOAD_PROBLEMS)


def provider_table(name: str, key: Sequence[str], columns: Sequence[tuple]) -> Table:
    """A provider's own table (`ecr_images`, …) for the fields the unified tables lack."""
    return Table(name, list(columns), primary_key=tuple(key))


# `json.dumps(..., separators=...)` builds a new encoder on every call; these give the same
# text without that cost (a tag row used to spend half its time constructing encoders)
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))
_SORTED_JSON = json.JSONEncoder(default=str, sort_keys=True)


def _compact_json(parts: Sequence[Any]) -> str:
    """`_COMPACT_JSON.encode(list(parts))`, the same text; strings (the usual case) go straight
    through the C string encoder instead of the encoder's Python loop (one tag row needs two)."""
    if all(type(part) is str for part in parts):
        return "[" + ",".join(map(_JSON_STRING, parts)) + "]"
    return _COMPACT_JSON.encode(list(parts))


_JSON_STRING = json.encoder.encode_basestring_ascii  # what JSONEncoder(ensure_ascii=True) uses


def tag_key(provider: str, registry: str, repository: str, tag: str) -> str:
    """The single history key: JSON of the four parts, so no two tuples share a key."""
    return _compact_json((provider, registry, repository, tag))


def tag_row(provider: str, registry: str, repository: str, tag: str, digest: str) -> Dict[str, Any]:
    key = tag_key(provider, registry, repository, tag)
    return {
        "tag_key": key,
        "provider": provider,
        "registry": registry,
        "repository": repository,
        "tag": tag,
        "digest": digest,
        "scope": None,
        "tag_version": _version(key, digest),
    }


def tag_columns(provider: str, registry: str, repository: str, tags: Sequence[tuple]) -> Dict[str, List[Any]]:
    """The rows `tag_row` gives for one repository's (tag, digest) pairs, as one list per
    column (for `Rows.add_columns`): no dict per tag."""
    keys = [tag_key(provider, registry, repository, tag) for tag, _ in tags]
    count = len(keys)
    return {
        "tag_key": keys,
        "provider": [provider] * count,
        "registry": [registry] * count,
        "repository": [repository] * count,
        "tag": [tag for tag, _ in tags],
        "digest": [digest for _, digest in tags],
        "tag_version": [_version(key, digest) for key, (_, digest) in zip(keys, tags)],
    }


def scope_marker(provider: str, registry: str, repository: Optional[str] = None) -> Dict[str, Any]:
    """Marks a registry (or one repository) as read in full by this run: see TAG_SCOPE."""
    scope = "repository" if repository is not None else "registry"
    return {
        "tag_key": None,
        "provider": provider,
        "registry": registry,
        "repository": repository,
        "tag": None,
        "digest": None,
        "scope": scope,
        "tag_version": _version(scope, provider, registry, repository),
    }


def _version(*parts: Any) -> str:
    return hashlib.sha256(_compact_json(parts).encode()).hexdigest()[:32]


def _jsonable(value: Any) -> Any:
    if isinstance(value, (dict, list, tuple)):
        return _SORTED_JSON.encode(value)
    return value


def _as_text(value: Any) -> Optional[str]:
    """An extra column's value as text (see the module docstring for why)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (dict, list, tuple)):
        return _jsonable(value)
    if isinstance(value, (bool, int, float)):
        return json.dumps(value)
    return str(value)


def batch(table: Table, rows: Iterable[Mapping[str, Any]]) -> pa.Table:
    """Build one arrow table of `table` from dict rows; unknown keys become extra columns."""
    rows = list(rows)
    known = table.column_names
    arrays = _known_columns(table, rows)
    extra_names: List[str] = []
    extra = set().union(*rows).difference(known) if rows else set()
    if extra:  # in order of first appearance, as a row-by-row scan would find them
        for row in rows:
            for key in row:
                if key in extra and key not in extra_names:
                    extra_names.append(key)
            if len(extra_names) == len(extra):
                break
    return _with_extra_columns(table, arrays, ((name, [row.get(name) for row in rows]) for name in extra_names))


def from_columns(table: Table, columns: Mapping[str, List[Any]], count: int) -> pa.Table:
    """The arrow table `batch()` gives for `count` rows, from one list of values per column
    (a source that maps straight into columns skips a dict per row): a known column missing
    or empty is NULL; any other name of `count` values is an extra column."""
    arrays = [
        _column(table, name, columns[name], typ) if columns.get(name) else pa.nulls(count, typ)
        for name, typ in table.columns
    ]
    known = set(table.column_names)
    extras = ((name, values) for name, values in columns.items() if name not in known and len(values) == count)
    return _with_extra_columns(table, arrays, extras)


def _with_extra_columns(table: Table, arrays: List[pa.Array], extras: Iterable[Any]) -> pa.Table:
    """The table's own `arrays` plus the (name, values) `extras` as text columns."""
    fields = list(table.arrow_schema)
    arrays = list(arrays)
    for name, raw in extras:
        values = [_as_text(value) for value in raw]
        if all(v is None for v in values):
            continue  # a column nobody filled tells dlt nothing
        arrays.append(pa.array(values, type=pa.string()))
        fields.append(pa.field(name, pa.string()))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _known_columns(table: Table, rows: List[Mapping[str, Any]]) -> List[pa.Array]:
    """The table's own columns from dict rows. Arrow converts the rows as one struct array in
    C++ (keys it does not know are skipped), 2-3x faster than a Python list per column; a page
    with a value of the wrong type takes the per-column path, which coerces and warns."""
    try:
        return pa.array(rows, type=_row_struct(table)).flatten()
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        return [_column(table, name, [row.get(name) for row in rows], typ) for name, typ in table.columns]


_ROW_STRUCTS: Dict[Any, pa.StructType] = {}


def _row_struct(table: Table) -> pa.StructType:
    key = (table.name, tuple(table.columns))
    struct = _ROW_STRUCTS.get(key)
    if struct is None:
        struct = _ROW_STRUCTS[key] = pa.struct([pa.field(name, typ) for name, typ in table.columns])
    return struct


def _column(table: Table, name: str, values: List[Any], typ: pa.DataType) -> pa.Array:
    """One known column; a value of the wrong type (an API sending a number where text belongs,
    a mapping bug) is coerced or blanked with a warning instead of failing the whole page."""
    try:
        return pa.array(values, type=typ)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        pass
    fixed = []
    for value in values:
        try:
            pa.array([value], type=typ)
            fixed.append(value)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
            coerced = _jsonable(value) if typ == pa.string() and value is not None else None
            if coerced is not None and not isinstance(coerced, str):
                coerced = str(coerced)
            log.warning("%s.%s: value %.100r is not %s; loaded as %r", table.name, name, value, typ, coerced)
            fixed.append(coerced)
    return pa.array(fixed, type=typ)


def emit(table: Table, rows: Iterable[Mapping[str, Any]]) -> Any:
    """A page of rows as an arrow table marked for `table` (to `yield` from a resource)."""
    return emit_arrow(table, batch(table, rows))


def emit_arrow(table: Table, arrow: pa.Table) -> Any:
    """An arrow table of `table` (from `batch()`) marked with the table's dlt hints."""
    # a table variant: one resource writes several tables, each with its own hints
    return dlt.mark.with_hints(arrow, table.hints(), create_table_variant=True)


class Rows:
    """Collects rows per table while a source maps one page; `emit_all()` yields them."""

    def __init__(self) -> None:
        self._rows: Dict[str, List[Mapping[str, Any]]] = {}
        self._tables: Dict[str, Table] = {}
        # tables built from column lists (`add_columns`), emitted with the dict rows
        self._parts: Dict[str, List[pa.Table]] = {}

    def add_columns(self, table: Table, columns: Mapping[str, List[Any]], count: int) -> None:
        """`count` rows given as one list per column (see `from_columns`): a source that maps
        straight into columns keeps no dict per row (nor the collector's work of tracking them)."""
        if count:
            self._tables[table.name] = table
            self._parts.setdefault(table.name, []).append(from_columns(table, columns, count))

    def add_arrow_tables(self, tables: Iterable[tuple]) -> None:
        """Rows already built as (Table, arrow table) pairs: what `arrow_tables()` gave in a
        worker process."""
        for table, arrow in tables:
            if arrow.num_rows:
                self._tables[table.name] = table
                self._parts.setdefault(table.name, []).append(arrow)

    def add(self, table: Table, row: Mapping[str, Any]) -> None:
        self._tables[table.name] = table
        self._rows.setdefault(table.name, []).append(row)

    def extend(self, table: Table, rows: Iterable[Mapping[str, Any]]) -> None:
        for row in rows:
            self.add(table, row)

    def add_image(self, image: Dict[str, Any], manifest: Optional[Any] = None) -> None:
        """An `images` row and, when the manifest is known, its layer and child rows."""
        from . import manifests

        if manifest is not None:
            image = {**manifests.image_fields(manifest), **{k: v for k, v in image.items() if v is not None}}
            key = {
                "provider": image["provider"],
                "registry": image["registry"],
                "repository": image["repository"],
                "image_digest": image["digest"],
            }
            self.extend(IMAGE_LAYERS, manifests.layer_rows(key, manifest))
            self.extend(IMAGE_MANIFESTS, manifests.child_rows(key, manifest))
        self.add(IMAGES, image)

    def problem(self, provider: str, registry: Optional[str], repository: Optional[str], call: str, obj: Optional[str], reason: str) -> None:
        """Record a record loaded only in part (a `load_problems` row and a warning)."""
        from datetime import datetime, timezone

        log.warning("%s %s %s: %s %s: %s", provider, registry, repository or "", call, obj or "", reason)
        self.add(
            LOAD_PROBLEMS,
            {
                "provider": provider,
                "registry": registry,
                "repository": repository,
                "call": call,
                "object": obj,
                "reason": reason,
                "seen_at": datetime.now(timezone.utc),
            },
        )

    def count(self, table: Table) -> int:
        return len(self._rows.get(table.name, ())) + sum(part.num_rows for part in self._parts.get(table.name, ()))

    def merge(self, other: "Rows") -> None:
        """Take over `other`'s rows, so that small units of work (one repository each) leave as
        a few large arrow tables: dlt's cost is per yielded item as much as per row."""
        for name, rows in other._rows.items():
            if rows:
                self._tables[name] = other._tables[name]
                self._rows.setdefault(name, []).extend(rows)
        for name, parts in other._parts.items():
            self._tables[name] = other._tables[name]
            self._parts.setdefault(name, []).extend(parts)
        other._rows.clear()
        other._parts.clear()

    def __len__(self) -> int:
        return sum(len(rows) for rows in self._rows.values()) + sum(
            part.num_rows for parts in self._parts.values() for part in parts
        )

    def emit_all(self) -> Iterable[Any]:
        for table, arrow in self.arrow_tables():
            yield emit_arrow(table, arrow)

    def arrow_tables(self) -> List[tuple]:
        """The rows as (Table, arrow table) pairs, one per table, and forget them: what a worker
        process sends back (arrow crosses a process boundary as buffers, dicts one by one)."""
        tables = []
        for name in list(self._rows) + [name for name in self._parts if name not in self._rows]:
            rows, parts = self._rows.get(name), self._parts.get(name, [])
            if rows:
                parts = [batch(self._tables[name], rows)] + parts
            if parts:
                # extra columns may differ between the parts: missing ones are filled with NULL
                arrow = parts[0] if len(parts) == 1 else pa.concat_tables(parts, promote_options="default")
                tables.append((self._tables[name], arrow))
        self._rows.clear()
        self._parts.clear()
        return tables
