"""The naive NCP baseline: the calls `sources.ncp` makes on a first load, one after another
with `requests`, rows as Arrow tables inserted straight into DuckDB (no dlt, no merge, no history).

Calls (API gateway, signature v2 with the source's own `NcpSignatureV2`): `GET /repositories`
(registries) → per registry `GET /repositories/{registry}` (NCP images = our repositories) →
per repository `GET /repositories/{registry}/{image}/tags`; every listing paged with `page`
(1-based) and `pagesize` 100 until `next` is null, as the source pages them.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Iterator, List, Set
from urllib.parse import quote

import pyarrow as pa
import requests

from sources.ncp.helpers import NcpSignatureV2, registry_endpoint
from sources.ncp.settings import DEFAULT_BASE_URL, DEFAULT_PAGE_SIZE, REGION_PREFIXES

from .writer import CHILDREN, KEY, TAGS, TS, Writer, parse_time, to_int

SCHEMAS = {
    "repositories": pa.schema(KEY + [("updated_at", TS), ("pull_count", pa.int64())]),
    "images": pa.schema(
        KEY
        + [
            ("digest", pa.string()), ("media_type", pa.string()), ("size_bytes", pa.int64()), ("created_at", TS),
            ("last_pulled_at", TS), ("platform_os", pa.string()), ("platform_arch", pa.string()), ("child_count", pa.int64()),
        ]
    ),
    "children": CHILDREN,
    "tags": TAGS,
}


def _pages(session: requests.Session, url: str) -> Iterator[List[Dict[str, Any]]]:
    page = 1
    while True:
        response = session.get(url, params={"pagesize": DEFAULT_PAGE_SIZE, "page": page}, timeout=60)
        response.raise_for_status()
        body = response.json()
        yield body.get("results") or []
        if body.get("next") is None:
            return
        page = int(body["next"])


def run(duckdb_path: str) -> Dict[str, int]:
    """Load every registry of SOURCES__NCP__REGION from SOURCES__NCP__BASE_URL, sequentially."""
    region = os.environ.get("SOURCES__NCP__REGION", "kr")
    base = (os.environ.get("SOURCES__NCP__BASE_URL") or DEFAULT_BASE_URL).rstrip("/") + REGION_PREFIXES[region]
    session = requests.Session()
    session.auth = NcpSignatureV2(os.environ["SOURCES__NCP__ACCESS_KEY"], os.environ["SOURCES__NCP__SECRET_KEY"])
    writer = Writer(duckdb_path, SCHEMAS)
    for registries in _pages(session, f"{base}/repositories"):
        for doc in registries:
            name = doc["name"]
            registry = registry_endpoint(name, region, doc)
            for images in _pages(session, f"{base}/repositories/{quote(name, safe='')}"):
                for image in images:
                    repository = image["name"]
                    writer.add("repositories", (registry, repository, parse_time(image.get("last_updated")), image.get("pull_count")))
                    url = f"{base}/repositories/{quote(name, safe='')}/{quote(repository, safe='')}/tags"
                    _load_tags(session, writer, url, registry, repository)
    return writer.close()


def _image_row(registry: str, repository: str, digest: str, entry: Dict[str, Any], child_count: Any = None) -> tuple:
    return (
        registry, repository, digest, entry.get("mediaType"), to_int(entry.get("size")), parse_time(entry.get("created")),
        parse_time(entry.get("latest_pulled")), entry.get("os"), entry.get("architecture"), child_count,
    )


def _load_tags(session: requests.Session, writer: Writer, url: str, registry: str, repository: str) -> None:
    seen: Set[str] = set()
    for tags in _pages(session, url):
        for tag in tags:
            digest = tag["digest"]
            writer.add("tags", (registry, repository, tag["name"], digest))
            if digest in seen:
                continue
            seen.add(digest)
            entries = tag.get("images") or []
            children = [entry for entry in entries if entry.get("digest") and entry["digest"] != digest]
            if not children:  # a single-platform image: its one entry is itself
                own = entries[0] if entries else {}
                writer.add("images", _image_row(registry, repository, digest, own))
                continue
            # an index: its row (size as the tag reports it), its children's rows and the links
            writer.add("images", (registry, repository, digest, None, to_int(tag.get("full_size")), None, None, None, None, len(children)))
            for position, child in enumerate(children):
                writer.add(
                    "children",
                    (registry, repository, digest, position, child["digest"], child.get("mediaType"), child.get("os"), child.get("architecture")),
                )
                if child["digest"] not in seen:
                    seen.add(child["digest"])
                    writer.add("images", _image_row(registry, repository, child["digest"], child))
