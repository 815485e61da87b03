"""The naive Yandex baseline: the calls `sources.yandex` makes, one after another with
`requests`, rows as Arrow tables inserted straight into DuckDB (no dlt, no merge, no history).

Calls (IAM token from the service-account key through the source's own `ServiceAccountKeyToken`
and `BearerAuth`): per folder `GET /registries?folderId` (Registry.list) → per registry
`GET /repositories?registryId` (Repository.list) and `GET /images?registryId` (Image.list);
every listing paged with `pageSize` 1000 and `nextPageToken`, as the source pages them. An
Image.list record is the whole image (blobs, tags), so there are no per-image calls.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Iterator, List

import pyarrow as pa
import requests

from sources.yandex import tokens_url
from sources.yandex.auth import BearerAuth, ServiceAccountKeyToken
from sources.yandex.helpers import registry_ref, repository_of
from sources.yandex.settings import DEFAULT_BASE_URL, DEFAULT_IAM_URL, PAGE_SIZE

from .writer import KEY, LAYERS, TAGS, TS, Writer, parse_time, to_int

SCHEMAS = {
    "repositories": pa.schema(KEY + [("repository_id", pa.string())]),
    "images": pa.schema(
        KEY
        + [
            ("digest", pa.string()), ("size_bytes", pa.int64()), ("created_at", TS),
            ("config_digest", pa.string()), ("layer_count", pa.int64()),
        ]
    ),
    "layers": LAYERS,
    "tags": TAGS,
}


def _pages(session: requests.Session, url: str, params: Dict[str, Any], selector: str) -> Iterator[List[Dict[str, Any]]]:
    token = None
    while True:
        answer = session.get(url, params={**params, "pageSize": PAGE_SIZE, **({"pageToken": token} if token else {})}, timeout=60)
        answer.raise_for_status()
        body = answer.json()
        yield body.get(selector) or []
        token = body.get("nextPageToken")
        if not token:
            return


def run(duckdb_path: str) -> Dict[str, int]:
    """Load every registry of the folders in SOURCES__YANDEX__FOLDER_ID, sequentially."""
    base = (os.environ.get("SOURCES__YANDEX__BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
    iam_url = tokens_url(os.environ.get("SOURCES__YANDEX__IAM_URL") or DEFAULT_IAM_URL)
    folders = json.loads(os.environ["SOURCES__YANDEX__FOLDER_ID"])
    session = requests.Session()
    session.auth = BearerAuth(ServiceAccountKeyToken(os.environ["SOURCES__YANDEX__SERVICE_ACCOUNT_KEY"], iam_url))
    writer = Writer(duckdb_path, SCHEMAS)
    for folder in folders:
        for registries in _pages(session, f"{base}/registries", {"folderId": folder}, "registries"):
            for record in registries:
                _load_registry(session, writer, base, record["id"])
    return writer.close()


def _load_registry(session: requests.Session, writer: Writer, base: str, registry_id: str) -> None:
    registry = registry_ref(registry_id)
    for repositories in _pages(session, f"{base}/repositories", {"registryId": registry_id}, "repositories"):
        for record in repositories:
            writer.add("repositories", (registry, repository_of(record["name"], registry_id), record.get("id")))
    for images in _pages(session, f"{base}/images", {"registryId": registry_id}, "images"):
        for image in images:
            repository = repository_of(image["name"], registry_id)
            digest = image["digest"]
            for tag in image.get("tags") or ():
                writer.add("tags", (registry, repository, tag, digest))
            layers = image.get("layers") or []
            for position, layer in enumerate(layers):
                writer.add("layers", (registry, repository, digest, position, layer.get("digest"), to_int(layer.get("size")), None))
            writer.add(
                "images",
                (
                    registry, repository, digest, to_int(image.get("compressedSize")), parse_time(image.get("createdAt")),
                    (image.get("config") or {}).get("digest"), len(layers),
                ),
            )
