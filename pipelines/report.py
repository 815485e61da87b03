"""The headline answers, from the analytics views, as terminal tables, JSON or CSV.

`render_report(source, fmt)` is what `registry-etl report` and `registry-etl demo` print. The
source is a DuckDB file path (opened read-only, so a running load is never blocked; the views are
created as temporary views from this code, so any file a load wrote can be reported on), a DuckDB
connection, or a dlt pipeline on any destination (queried through its sql client).

Sections (the keys of `build_report()` and of the JSON output):
    registries              unique vs total bytes per registry, with the dedup ratio
    largest repositories    repositories by unique bytes
    largest images          top-level images (an index with its platform children) by bytes
    top tag movers          tags by moves in the window, then all-time moves
    cleanup candidates      per registry and reason: images, and the bytes deleting them frees
    cleanup by repository   repositories with the most bytes to reclaim (any reason)
"""

from __future__ import annotations

import csv
import io
import json
import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import analytics

FORMATS = ("text", "json", "csv")


@dataclass(frozen=True)
class SectionQuery:
    key: str
    title: str  # the question the section answers
    sql: str  # over the (temporary) analytics views; {limit} is filled in


SECTIONS: Tuple[SectionQuery, ...] = (
    SectionQuery(
        "registries",
        "How much does each registry store, counting shared layers once?",
        """SELECT provider, registry, repository_count AS repositories, image_count AS images,
                  tag_count AS tags, total_bytes, repository_unique_bytes, unique_bytes,
                  saved_bytes, dedup_ratio
           FROM registry_storage
           ORDER BY unique_bytes DESC, provider, registry""",
    ),
    SectionQuery(
        "largest repositories",
        "Which repositories store the most (unique bytes)?",
        """SELECT provider, reference AS repository, image_count AS images, tag_count AS tags,
                  untagged_count AS untagged, total_bytes, unique_bytes, dedup_ratio
           FROM repository_storage
           ORDER BY unique_bytes DESC, total_bytes DESC, reference
           LIMIT {limit}""",
    ),
    SectionQuery(
        "largest images",
        "Which images are the largest (a multi-arch index with all its platforms)?",
        """SELECT provider, COALESCE(tag_reference, pull_reference) AS image, tags,
                  platform_count AS platforms, unit_bytes AS bytes, exclusive_bytes, created_at
           FROM image_units
           ORDER BY unit_bytes DESC, pull_reference
           LIMIT {limit}""",
    ),
    SectionQuery(
        "top tag movers",
        "Which tags move most (moves seen by loads in the window, and in all history)?",
        """SELECT provider, tag_reference AS tag, moves_in_window, window_days, moves_all_time,
                  versions, last_moved_at, is_current
           FROM tag_moves
           WHERE moves_all_time > 0
           ORDER BY moves_in_window DESC, moves_all_time DESC, last_moved_at DESC, tag_reference
           LIMIT {limit}""",
    ),
    SectionQuery(
        "cleanup candidates",
        "What could be deleted, and how many bytes would it free (per registry and reason)?",
        """SELECT provider, registry, reason,
                  CAST(SUM(candidate_count) AS BIGINT) AS images,
                  CAST(SUM(tagged_count) AS BIGINT) AS still_tagged,
                  CAST(SUM(candidate_bytes) AS BIGINT) AS candidate_bytes,
                  CAST(SUM(reclaimable_bytes) AS BIGINT) AS reclaimable_bytes
           FROM cleanup_summary
           GROUP BY provider, registry, reason
           ORDER BY provider, registry,
                    CASE reason WHEN 'untagged' THEN 1 WHEN 'stale' THEN 2 WHEN 'retention' THEN 3 ELSE 4 END""",
    ),
    SectionQuery(
        "cleanup by repository",
        "Which repositories have the most bytes to reclaim (untagged, stale or beyond retention)?",
        """SELECT provider, reference AS repository, candidate_count AS images,
                  tagged_count AS still_tagged, candidate_bytes, reclaimable_bytes, oldest_created_at
           FROM cleanup_summary
           WHERE reason = 'any'
           ORDER BY reclaimable_bytes DESC, reference
           LIMIT {limit}""",
    ),
)


@dataclass
class Section:
    key: str
    title: str
    columns: List[str]
    rows: List[Tuple[Any, ...]] = field(default_factory=list)

    def records(self) -> List[Dict[str, Any]]:
        return [dict(zip(self.columns, row)) for row in self.rows]


@dataclass
class Report:
    sections: Dict[str, Section]
    parameters: Dict[str, int]
    generated_at: datetime

    def __getitem__(self, key: str) -> Section:
        return self.sections[key]


# ---- reading


@contextmanager
def _session(source: Any, dataset: str, parameters: Dict[str, Optional[int]]) -> Iterator[Any]:
    """Yields run(sql) -> (columns, rows) with the analytics views available unqualified."""
    if isinstance(source, (str, Path)):
        conn = analytics.connect_readonly(source, dataset, **parameters)
        try:
            yield _duckdb_runner(conn)
        finally:
            conn.close()
    elif hasattr(source, "sql_client") and hasattr(source, "dataset_name"):  # a dlt pipeline
        with source.sql_client() as client:
            analytics.create_views(client, source.dataset_name, temporary=True, **parameters)
            yield _dlt_runner(client)
    elif type(source).__module__.startswith(("duckdb", "_duckdb")):
        analytics.create_views(source, dataset, temporary=True, **parameters)
        yield _duckdb_runner(source)
    else:
        raise TypeError(f"report source must be a DuckDB path or connection or a dlt pipeline, got {type(source).__name__}")


def _duckdb_runner(conn: Any):
    def run(sql: str) -> Tuple[List[str], List[tuple]]:
        cursor = conn.execute(sql)
        return [d[0] for d in cursor.description], cursor.fetchall()

    return run


def _dlt_runner(client: Any):
    def run(sql: str) -> Tuple[List[str], List[tuple]]:
        with client.execute_query(sql) as cursor:
            return [d[0] for d in cursor.description], [tuple(row) for row in cursor.fetchall()]

    return run


def build_report(
    source: Union[str, Path, Any],
    *,
    dataset: str = analytics.DEFAULT_DATASET,
    limit: int = 10,
    tag_moves_days: Optional[int] = None,
    stale_days: Optional[int] = None,
    keep_last: Optional[int] = None,
) -> Report:
    """Query every headline section.

    Args:
        source: a DuckDB file path (opened read-only), a DuckDB connection, or a dlt pipeline.
        dataset: schema holding the unified tables.
        limit: rows per "top" section.
        tag_moves_days, stale_days, keep_last: the view parameters (see analytics.DEFAULT_PARAMETERS).
    """
    parameters = {"tag_moves_days": tag_moves_days, "stale_days": stale_days, "keep_last": keep_last}
    effective = {k: v if v is not None else analytics.DEFAULT_PARAMETERS[k] for k, v in parameters.items()}
    sections: Dict[str, Section] = {}
    with _session(source, dataset, parameters) as run:
        for query in SECTIONS:
            columns, rows = run(query.sql.format(limit=int(limit)))
            sections[query.key] = Section(query.key, query.title, columns, [_plain_row(r) for r in rows])
    return Report(sections, effective, datetime.now(timezone.utc))


def _plain_row(row: Sequence[Any]) -> Tuple[Any, ...]:
    """Engine types to plain Python (Postgres hands out Decimal for sums, NaN never helps)."""
    out = []
    for value in row:
        if isinstance(value, Decimal):
            value = int(value) if value == value.to_integral_value() else float(value)
        elif isinstance(value, float) and math.isnan(value):
            value = None
        out.append(value)
    return tuple(out)


# ---- rendering


def render_report(source: Union[str, Path, Any], fmt: str = "text", **options: Any) -> str:
    """The report as `text` (terminal tables), `json` or `csv`; options go to build_report()."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown report format {fmt!r}; one of {', '.join(FORMATS)}")
    report = build_report(source, **options)
    return {"text": to_text, "json": to_json, "csv": to_csv}[fmt](report)


def to_json(report: Report) -> str:
    """{section: [row objects]} plus an "about" object (time, parameters); bytes as integers."""
    document: Dict[str, Any] = {key: section.records() for key, section in report.sections.items()}
    document["about"] = {"generated_at": report.generated_at, "parameters": report.parameters}
    return json.dumps(document, default=_json_value, indent=2)


def _json_value(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return str(value)


def to_csv(report: Report) -> str:
    """One block per section: a header `section,<columns>` then its rows; blocks separated by a
    blank line (csv readers return an empty row there). Bytes as integers, times ISO 8601."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for index, section in enumerate(report.sections.values()):
        if index:
            writer.writerow([])
        writer.writerow(["section"] + section.columns)
        for row in section.rows:
            writer.writerow([section.key] + [_csv_value(v) for v in row])
    return buffer.getvalue()


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return value


def to_text(report: Report) -> str:
    params = report.parameters
    blocks = [
        f"registry-etl report, {report.generated_at:%Y-%m-%d %H:%M} UTC"
        f" (tag moves: last {params['tag_moves_days']} days; stale: no push or pull for"
        f" {params['stale_days']} days; retention: keep last {params['keep_last']} per repository)"
    ]
    for section in report.sections.values():
        heading = f"== {section.key}: {section.title} =="
        body = _table(section.columns, section.rows) if section.rows else "(none)"
        blocks.append(f"{heading}\n{body}")
    return "\n\n".join(blocks)


def _table(columns: List[str], rows: List[Tuple[Any, ...]]) -> str:
    cells = [list(columns)] + [[_text_value(col, v) for col, v in zip(columns, row)] for row in rows]
    numeric = [all(_is_number(row[i]) for row in rows) for i in range(len(columns))]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]

    def line(values: List[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)).rstrip()

    out = [line(cells[0]), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in cells[1:]]
    return "\n".join(out)


def _is_number(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def _text_value(column: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if column.endswith("bytes") and isinstance(value, int):
        return human_bytes(value)
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M")
    return str(value)


def human_bytes(value: int) -> str:
    """1536 -> '1.5 KiB' (binary units, as registries and `docker images` count)."""
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{int(size)} B" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    return f"{value} B"  # pragma: no cover
