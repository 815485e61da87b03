"""The headline answers from a loaded DuckDB file (read-only, so a running load is not blocked)."""

from __future__ import annotations

import csv
import io
import json
from typing import Any, Dict, List, Tuple

import duckdb

SECTIONS: Dict[str, str] = {
    "largest repositories": """
        SELECT provider, registry, repository, count(*) AS images, sum(size_bytes) AS total_bytes
        FROM registry.images GROUP BY ALL ORDER BY total_bytes DESC NULLS LAST LIMIT 10""",
    "largest images": """
        SELECT provider, registry || '/' || repository || '@' || digest AS reference, size_bytes
        FROM registry.images ORDER BY size_bytes DESC NULLS LAST LIMIT 10""",
    "untagged images": """
        SELECT i.provider, i.registry, i.repository, count(*) AS images, sum(i.size_bytes) AS bytes
        FROM registry.images i
        WHERE NOT EXISTS (SELECT 1 FROM registry.tags t WHERE t.valid_to IS NULL AND t.provider = i.provider
                          AND t.registry = i.registry AND t.repository = i.repository AND t.digest = i.digest)
          AND NOT EXISTS (SELECT 1 FROM registry.images__manifests m WHERE m.provider = i.provider
                          AND m.registry = i.registry AND m.repository = i.repository AND m.digest = i.digest)
        GROUP BY ALL ORDER BY bytes DESC NULLS LAST LIMIT 10""",
    "tag moves": """
        SELECT provider, registry, repository, tag, count(*) - 1 AS moves
        FROM registry.tags GROUP BY ALL HAVING count(*) > 1 ORDER BY moves DESC, tag LIMIT 10""",
}


def build_report(path: str) -> Dict[str, Tuple[List[str], List[Tuple[Any, ...]]]]:
    with duckdb.connect(path, read_only=True) as con:
        out = {}
        for title, sql in SECTIONS.items():
            cursor = con.execute(sql)
            out[title] = ([d[0] for d in cursor.description], cursor.fetchall())
        return out


def _table(columns: List[str], rows: List[Tuple[Any, ...]]) -> str:
    cells = [[str(c) for c in columns]] + [["" if v is None else f"{v:,}" if isinstance(v, int) else str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render_report(path: str, fmt: str = "text") -> str:
    report = build_report(path)
    if fmt == "json":
        return json.dumps({t: [dict(zip(c, r)) for r in rows] for t, (c, rows) in report.items()}, default=str, indent=2)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        for title, (columns, rows) in report.items():
            writer.writerow(["section"] + columns)
            for row in rows:
                writer.writerow([title] + list(row))
        return buffer.getvalue()
    return "\n\n".join(f"== {title} ==\n" + (_table(c, rows) if rows else "(none)") for title, (c, rows) in report.items())
