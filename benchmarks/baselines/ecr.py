"""The naive ECR baseline: the same calls our source makes, one after another with boto3, rows
built as Arrow tables and inserted straight into DuckDB (no dlt, no merge, no history).

It is what a short script would do, written with care for speed (Arrow, batched inserts), so
that the ratio to our load shows what dlt, the merge and the tag history cost, and what
overlapping calls gain.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict

import boto3
import pyarrow as pa

from .writer import CHILDREN, KEY, LAYERS, TAGS, TS, Writer, add_manifest_rows, utc as _utc

SCHEMAS = {
    "repositories": pa.schema(KEY + [("created_at", TS), ("image_count", pa.int64())]),
    "images": pa.schema(
        KEY
        + [
            ("digest", pa.string()), ("media_type", pa.string()),
            ("size_bytes", pa.int64()), ("created_at", TS), ("last_pulled_at", TS), ("status", pa.string()),
            ("config_digest", pa.string()), ("layer_count", pa.int64()), ("child_count", pa.int64()),
        ]
    ),
    "layers": LAYERS,
    "children": CHILDREN,
    "tags": TAGS,
}


def run(duckdb_path: str) -> Dict[str, int]:
    """Load every region in SOURCES__ECR__REGIONS from SOURCES__ECR__ENDPOINT_URL, sequentially."""
    regions = json.loads(os.environ["SOURCES__ECR__REGIONS"])
    endpoint = os.environ.get("SOURCES__ECR__ENDPOINT_URL") or None
    writer = Writer(duckdb_path, SCHEMAS)
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
            layer_count, child_count = add_manifest_rows(writer, registry, name, digest, manifest)
            writer.add(
                "images",
                (
                    registry, name, digest, detail.get("imageManifestMediaType"), detail.get("imageSizeInBytes"),
                    _utc(detail.get("imagePushedAt")), _utc(detail.get("lastRecordedPullTime")), detail.get("imageStatus"),
                    (manifest.get("config") or {}).get("digest"), layer_count, child_count,
                ),
            )
