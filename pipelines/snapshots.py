"""Reading the filesystem destination (Parquet files): what plain files cannot merge.

dlt's filesystem destination has no merge and no scd2 for plain Parquet (`merge` falls back to
`append`; with the delta table format only `upsert`/`insert-only` exist, scd2 not at all). So
on files the tables are append logs, and this module is the deliberate answer:

- `tags` holds one snapshot per run: every tag the run read plus the run's scope markers
  (`scope` = 'registry' or 'repository', `tag` NULL), each row with its run's `_dlt_load_id`.
  `TAG_HISTORY_SQL` rebuilds exactly what scd2 keeps elsewhere: a version per (tag, digest) span,
  `valid_from` = the load that first saw it, `valid_to` = the first later load that read the
  tag's scope in full and saw it absent or moved (NULL = current). A load that did not read a
  scope says nothing about it, as with scd2's `destination_scope`.
- `repositories` gets a row per run: `LATEST_REPOSITORIES_SQL` keeps each repository's newest.
- `images`, `images__layers`, `images__manifests` need nothing: each digest is fetched and
  written once (sources skip digests already in the destination), so they hold no duplicates.

The SQL is DuckDB's, run through dlt's filesystem SQL client (DuckDB views over the files), or
by anyone with DuckDB over the same files (`read_parquet('<bucket>/registry/tags/*.parquet')`).
"""

from __future__ import annotations

from typing import Any, List, Tuple

import dlt

TAG_HISTORY_SQL = """
WITH snap AS (
    SELECT CAST(_dlt_load_id AS DOUBLE) AS load_at, provider, registry, repository, tag, tag_key, digest, scope
    FROM {tags}
),
loads AS (SELECT DISTINCT load_at FROM snap),
seen AS (SELECT load_at, tag_key, min(digest) AS digest FROM snap WHERE tag IS NOT NULL GROUP BY ALL),
tag_keys AS (SELECT DISTINCT tag_key, provider, registry, repository, tag FROM snap WHERE tag IS NOT NULL),
scopes AS (SELECT DISTINCT load_at, provider, registry, repository, scope FROM snap WHERE scope IS NOT NULL),
observed AS (  -- per tag and load: its digest, or NULL when the load read the tag's scope and it was gone
    SELECT k.tag_key, k.provider, k.registry, k.repository, k.tag, l.load_at, s.digest
    FROM tag_keys k CROSS JOIN loads l
    LEFT JOIN seen s ON s.tag_key = k.tag_key AND s.load_at = l.load_at
    WHERE s.digest IS NOT NULL OR EXISTS (
        SELECT 1 FROM scopes c
        WHERE c.load_at = l.load_at AND c.provider = k.provider AND c.registry = k.registry
          AND (c.scope = 'registry' OR (c.scope = 'repository' AND c.repository = k.repository)))
),
changes AS (
    SELECT *, CASE WHEN digest IS NOT DISTINCT FROM lag(digest) OVER (PARTITION BY tag_key ORDER BY load_at)
                   THEN 0 ELSE 1 END AS starts
    FROM observed
),
spans AS (
    SELECT *, sum(starts) OVER (PARTITION BY tag_key ORDER BY load_at ROWS UNBOUNDED PRECEDING) AS span
    FROM changes
),
versions AS (
    SELECT tag_key, provider, registry, repository, tag, span, min(digest) AS digest, min(load_at) AS first_at
    FROM spans GROUP BY ALL
),
bounded AS (
    SELECT *, lead(first_at) OVER (PARTITION BY tag_key ORDER BY span) AS next_at FROM versions
)
SELECT provider, registry, repository, tag, tag_key, digest,
       to_timestamp(first_at) AS valid_from, to_timestamp(next_at) AS valid_to
FROM bounded
WHERE digest IS NOT NULL
"""

LATEST_REPOSITORIES_SQL = """
SELECT * EXCLUDE (newest) FROM (
    SELECT *, row_number() OVER (PARTITION BY provider, registry, repository ORDER BY CAST(_dlt_load_id AS DOUBLE) DESC) AS newest
    FROM {repositories}
) WHERE newest = 1
"""


def _run(pipeline: dlt.Pipeline, template: str, **tables: str) -> Tuple[List[str], List[Tuple[Any, ...]]]:
    with pipeline.sql_client() as client:
        names = {key: client.make_qualified_table_name(table) for key, table in tables.items()}
        with client.execute_query(template.format(**names)) as cursor:
            columns = [d[0] for d in cursor.description]
            return columns, [tuple(row) for row in cursor.fetchall()]


def tag_history(pipeline: dlt.Pipeline, where: str = "") -> List[dict]:
    """The scd2-equivalent tag history from the snapshot log (`where` filters the result)."""
    sql = f"SELECT * FROM ({TAG_HISTORY_SQL}) AS history {where}"
    columns, rows = _run(pipeline, sql, tags="tags")
    return [dict(zip(columns, row)) for row in rows]


def latest_repositories(pipeline: dlt.Pipeline) -> List[dict]:
    columns, rows = _run(pipeline, LATEST_REPOSITORIES_SQL, repositories="repositories")
    return [dict(zip(columns, row)) for row in rows]
