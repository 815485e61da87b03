"""The naive SWR baseline: the calls `sources.swr` makes on a first load, one after another
with `requests`, rows as Arrow tables inserted straight into DuckDB (no dlt, no merge, no history).

Calls (AK/SK signed with the source's own `AkSkAuth`): `GET /v2/manage/namespaces` → per
namespace `GET /v2/manage/repos?namespace=…` → per repository
`GET /v2/manage/namespaces/{ns}/repos/{repo}/tags`; listings paged with `offset`/`limit` 1000
until a short page, as the source pages them. Tag records carry the manifest as a string,
parsed here for layers and index children (no further calls).
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Iterator, List, Set

import pyarrow as pa
import requests

from sources.swr.helpers import AkSkAuth, registry_host, registry_name, tags_path
from sources.swr.settings import API_URL_TEMPLATE, NAMESPACES_PATH, PAGE_LIMIT, REPOSITORIES_PATH

from .writer import CHILDREN, KEY, LAYERS, TAGS, TS, Writer, add_manifest_rows, parse_time, to_int

SCHEMAS = {
    "repositories": pa.schema(
        KEY + [("created_at", TS), ("updated_at", TS), ("image_count", pa.int64()), ("pull_count", pa.int64()), ("size_bytes", pa.int64())]
    ),
    "images": pa.schema(
        KEY
        + [
            ("digest", pa.string()), ("media_type", pa.string()), ("size_bytes", pa.int64()), ("created_at", TS),
            ("config_digest", pa.string()), ("layer_count", pa.int64()), ("child_count", pa.int64()),
        ]
    ),
    "layers": LAYERS,
    "children": CHILDREN,
    "tags": TAGS,
}


def _pages(session: requests.Session, url: str, params: Dict[str, Any]) -> Iterator[List[Dict[str, Any]]]:
    offset = 0
    while True:
        response = session.get(url, params={**params, "offset": offset, "limit": PAGE_LIMIT}, timeout=60)
        response.raise_for_status()
        page = response.json()
        yield page
        if len(page) < PAGE_LIMIT:
            return
        offset += PAGE_LIMIT


def run(duckdb_path: str) -> Dict[str, int]:
    """Load every namespace visible at SOURCES__SWR__BASE_URL (region SOURCES__SWR__REGION), sequentially."""
    region = os.environ["SOURCES__SWR__REGION"]
    base = (os.environ.get("SOURCES__SWR__BASE_URL") or API_URL_TEMPLATE.format(region=region)).rstrip("/")
    host = registry_host(region)
    session = requests.Session()
    session.auth = AkSkAuth(
        os.environ["SOURCES__SWR__ACCESS_KEY"], os.environ["SOURCES__SWR__SECRET_KEY"], os.environ.get("SOURCES__SWR__PROJECT_ID") or None
    )
    writer = Writer(duckdb_path, SCHEMAS)
    answer = session.get(base + NAMESPACES_PATH, timeout=60)
    answer.raise_for_status()
    for namespace in [item["name"] for item in answer.json()["namespaces"]]:
        registry = registry_name(host, namespace)
        for records in _pages(session, base + REPOSITORIES_PATH, {"namespace": namespace}):
            for record in records:
                name = record["name"]
                writer.add(
                    "repositories",
                    (
                        registry, name, parse_time(record.get("created_at")), parse_time(record.get("updated_at")),
                        to_int(record.get("num_images")), to_int(record.get("num_download")), to_int(record.get("size")),
                    ),
                )
                _load_tags(session, writer, base + tags_path(namespace, name), registry, name)
    return writer.close()


def _load_tags(session: requests.Session, writer: Writer, url: str, registry: str, repository: str) -> None:
    seen: Set[str] = set()
    for records in _pages(session, url, {}):
        for record in records:
            digest = record["digest"]
            writer.add("tags", (registry, repository, record["Tag"], digest))
            if digest in seen:
                continue
            seen.add(digest)
            manifest = json.loads(record.get("manifest") or "{}")
            layer_count, child_count = add_manifest_rows(writer, registry, repository, digest, manifest)
            writer.add(
                "images",
                (
                    registry, repository, digest, manifest.get("mediaType"), to_int(record.get("size")), parse_time(record.get("created")),
                    (manifest.get("config") or {}).get("digest"), layer_count, child_count,
                ),
            )
