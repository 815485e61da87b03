"""The naive ECR baseline: the same calls our source makes, one after another with boto3, rows
built as Arrow tables and inserted straight into DuckDB (no dlt, no merge, no history).

It is what a short script would do, written with care for speed (Arrow, batched inserts), so
that the ratio to our load shows what dlt, the merge and the tag history cost, and what
overlapping calls gain.
"""

from __future__ import annotations

import json
import os
from datetime import timezone
from typing import Any, Dict, List

import boto3
import duckdb
import pyarrow as pa

FLUSH_ROWS = 50_000
TS = pa.timestamp("us", tz="UTC")

SCHEMAS = {
    "repositories": pa.schema([("registry", pa.string()), ("repository", pa.string()), ("created_at", TS), ("image_count", pa.int64())]),
    "images": pa.schema(
        [
            ("registry", pa.string()), ("repository", pa.string()), ("digest", pa.string()), ("media_type", pa.string()),
            ("size_bytes", pa.int64()), ("created_at", TS), ("last_pulled_at", TS), ("status", pa.string()),
            ("config_digest", pa.string()), ("layer_count", pa.int64()), ("child_count", pa.int64()),
        ]
    ),
    "layers": pa.schema(
        [("registry", pa.string()), ("repository", pa.string()), ("image_digest", pa.string()), ("position", pa.int64()),
         ("digest", pa.string()), ("size_bytes", pa.int64()), ("media_type", pa.string())]
    ),
    "children": pa.schema(
        [("registry", pa.string()), ("repository", pa.string()), ("image_digest", pa.string()), ("position", pa.int64()),
         ("digest", pa.string()), ("media_type", pa.string()), ("platform_os", pa.string()), ("platform_arch", pa.string())]
    ),
    "tags": pa.schema([("registry", pa.string()), ("repository", pa.string()), ("tag", pa.string()), ("digest", pa.string())]),
}


class Writer:
    """Rows per table as column lists; flushed to DuckDB as Arrow tables every FLUSH_ROWS rows."""

    def __init__(self, path: str) -> None:
        self.con = duckdb.connect(path)
        self.rows: Dict[str, List[tuple]] = {name: [] for name in SCHEMAS}
        self.totals: Dict[str, int] = {name: 0 for name in SCHEMAS}
        for name, schema in SCHEMAS.items():
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
        schema = SCHEMAS[table]
        columns = list(zip(*rows))
        arrow = pa.Table.from_arrays([pa.array(col, type=f.type) for col, f in zip(columns, schema)], schema=schema)
        self.con.register("batch_arrow", arrow)
        self.con.execute(f"INSERT INTO {table} SELECT * FROM batch_arrow")
        self.con.unregister("batch_arrow")
        self.totals[table] += len(rows)
        self.rows[table] = []

    def close(self) -> Dict[str, int]:
        for table in SCHEMAS:
            self.flush(table)
        self.con.close()
        return self.totals


def _utc(value: Any) -> Any:
    return value.astimezone(timezone.utc) if value is not None else None


def run(duckdb_path: str) -> Dict[str, int]:
    """Load every region in SOURCES__ECR__REGIONS from SOURCES__ECR__ENDPOINT_URL, sequentially."""
    regions = json.loads(os.environ["SOURCES__ECR__REGIONS"])
    endpoint = os.environ.get("SOURCES__ECR__ENDPOINT_URL") or None
    writer = Writer(duckdb_path)
    for region in regions:
        client = boto3.client("ecr", region_name=region, endpoint_url=endpoint)
        for page in client.get_paginator("describe_repositories").paginate(PaginationConfig={"PageSize": 1000}):
            for repo in page["repositories"]:
                _load_repository(client, writer, repo)
    return writer.close()


def _load_repository(client: Any, writer: Writer, repo: Dict[str, Any]) -> None:
    name = repo["repositoryName"]
    registry = repo["repositoryUri"].split("/", 1)[0]
    digests: Dict[str, None] = {}
    paginator = client.get_paginator("list_images")
    for page in paginator.paginate(repositoryName=name, filter={"tagStatus": "ANY"}, PaginationConfig={"PageSize": 1000}):
        for image_id in page["imageIds"]:
            digests[image_id["imageDigest"]] = None
            if image_id.get("imageTag"):
                writer.add("tags", (registry, name, image_id["imageTag"], image_id["imageDigest"]))
    writer.add("repositories", (registry, name, _utc(repo.get("createdAt")), len(digests)))
    ids = [{"imageDigest": d} for d in digests]
    for start in range(0, len(ids), 100):
        chunk = ids[start : start + 100]
        details = client.describe_images(repositoryName=name, imageIds=chunk, filter={"tagStatus": "ANY"})["imageDetails"]
        manifests = client.batch_get_image(repositoryName=name, imageIds=chunk)["images"]
        by_digest = {m["imageId"]["imageDigest"]: json.loads(m["imageManifest"]) for m in manifests}
        for detail in details:
            digest = detail["imageDigest"]
            manifest = by_digest.get(digest) or {}
            layers = manifest.get("layers") or []
            children = manifest.get("manifests") or []
            for position, layer in enumerate(layers):
                writer.add("layers", (registry, name, digest, position, layer.get("digest"), layer.get("size"), layer.get("mediaType")))
            for position, child in enumerate(children):
                platform = child.get("platform") or {}
                writer.add(
                    "children",
                    (registry, name, digest, position, child.get("digest"), child.get("mediaType"), platform.get("os"), platform.get("architecture")),
                )
            writer.add(
                "images",
                (
                    registry, name, digest, detail.get("imageManifestMediaType"), detail.get("imageSizeInBytes"),
                    _utc(detail.get("imagePushedAt")), _utc(detail.get("lastRecordedPullTime")), detail.get("imageStatus"),
                    (manifest.get("config") or {}).get("digest"), len(layers), len(children),
                ),
            )
