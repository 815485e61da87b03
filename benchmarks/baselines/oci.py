"""The naive OCI baseline: the Distribution API calls `sources.oci` makes on a first load, one
after another with `requests`, rows as Arrow tables inserted straight into DuckDB (no dlt, no
merge, no history).

Calls (through the source's own `RegistryAuth`: anonymous, basic or bearer as the registry
asks): `GET /v2/_catalog?n=100` following `Link` → per repository `GET /v2/<name>/tags/list`
following `Link` → `HEAD /v2/<name>/manifests/<tag>` per tag (its digest) → `GET` of each
distinct manifest (index children too) → `GET` of each distinct image config blob (`created`).
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Iterator, List, Optional, Set
from urllib.parse import urljoin

import pyarrow as pa
import requests

from sources.oci.helpers import RegistryAuth, reference_path, registry_host, repository_path
from sources.oci.settings import CONFIG_MEDIA_TYPES, DEFAULT_CATALOG_PAGE_SIZE, MANIFEST_ACCEPT

from .writer import CHILDREN, KEY, LAYERS, TAGS, TS, Writer, add_manifest_rows, parse_time

SCHEMAS = {
    "repositories": pa.schema(KEY + [("image_count", pa.int64()), ("tag_count", pa.int64())]),
    "images": pa.schema(
        KEY
        + [
            ("digest", pa.string()), ("media_type", pa.string()), ("size_bytes", pa.int64()), ("created_at", TS),
            ("config_digest", pa.string()), ("platform_os", pa.string()), ("platform_arch", pa.string()),
            ("layer_count", pa.int64()), ("child_count", pa.int64()),
        ]
    ),
    "layers": LAYERS,
    "children": CHILDREN,
    "tags": TAGS,
}


def _pages(session: requests.Session, url: str, params: Optional[Dict[str, Any]] = None) -> Iterator[Dict[str, Any]]:
    """Each JSON body of a listing, following `Link: <…>; rel="next"`."""
    while url:
        response = session.get(url, params=params, timeout=60)
        response.raise_for_status()
        yield response.json()
        following = response.links.get("next", {}).get("url")
        url, params = (urljoin(url, following), None) if following else ("", None)


def run(duckdb_path: str) -> Dict[str, int]:
    """Load every repository of SOURCES__OCI__REGISTRY_URL's catalog, sequentially."""
    base = os.environ["SOURCES__OCI__REGISTRY_URL"].rstrip("/")
    registry = os.environ.get("SOURCES__OCI__REGISTRY_NAME") or registry_host(base)
    session = requests.Session()
    session.auth = RegistryAuth(os.environ.get("SOURCES__OCI__USERNAME"), os.environ.get("SOURCES__OCI__PASSWORD"), registry=registry)
    writer = Writer(duckdb_path, SCHEMAS)
    configs: Dict[str, Dict[str, Any]] = {}  # config digest -> the config JSON (one GET per digest)
    for body in _pages(session, f"{base}/v2/_catalog", {"n": DEFAULT_CATALOG_PAGE_SIZE}):
        for repository in body.get("repositories") or []:
            _load_repository(session, writer, base, registry, repository, configs)
    return writer.close()


def _load_repository(
    session: requests.Session, writer: Writer, base: str, registry: str, repository: str, configs: Dict[str, Dict[str, Any]]
) -> None:
    url = f"{base}/v2/{repository_path(repository)}"
    tags: List[str] = []
    try:
        for body in _pages(session, f"{url}/tags/list"):
            tags.extend(body.get("tags") or [])
    except requests.HTTPError as exc:
        # the CNCF registry answers NAME_UNKNOWN for a repository with untagged manifests only
        if exc.response is None or exc.response.status_code != 404:
            raise
    digests: Dict[str, None] = {}
    for tag in tags:
        answer = session.head(f"{url}/manifests/{reference_path(tag)}", headers={"Accept": MANIFEST_ACCEPT}, timeout=60)
        answer.raise_for_status()
        digest = answer.headers["Docker-Content-Digest"]
        writer.add("tags", (registry, repository, tag, digest))
        digests[digest] = None
    writer.add("repositories", (registry, repository, len(digests), len(tags)))
    todo = list(digests)
    platforms: Dict[str, Dict[str, Any]] = {}
    seen: Set[str] = set(todo)
    while todo:
        digest = todo.pop(0)
        answer = session.get(f"{url}/manifests/{digest}", headers={"Accept": MANIFEST_ACCEPT}, timeout=60)
        answer.raise_for_status()
        manifest = answer.json()
        layer_count, child_count = add_manifest_rows(writer, registry, repository, digest, manifest)
        for child in manifest.get("manifests") or []:
            if child.get("digest") and child["digest"] not in seen:
                seen.add(child["digest"])
                platforms[child["digest"]] = child.get("platform") or {}
                todo.append(child["digest"])
        config_blob = manifest.get("config") or {}
        config: Dict[str, Any] = {}
        if config_blob.get("mediaType") in CONFIG_MEDIA_TYPES and config_blob.get("digest"):
            config = configs.get(config_blob["digest"]) or {}
            if not config:
                blob = session.get(f"{url}/blobs/{config_blob['digest']}", timeout=60)
                blob.raise_for_status()
                config = configs[config_blob["digest"]] = json.loads(blob.content)
        platform = platforms.get(digest) or config
        created = config.get("created") or (manifest.get("annotations") or {}).get("org.opencontainers.image.created")
        size = None if child_count else config_blob.get("size", 0) + sum(layer.get("size", 0) for layer in manifest.get("layers") or [])
        writer.add(
            "images",
            (
                registry, repository, digest, manifest.get("mediaType") or answer.headers.get("Content-Type"), size,
                parse_time(created), config_blob.get("digest"), platform.get("os"), platform.get("architecture"),
                None if child_count else layer_count, child_count or None,
            ),
        )
