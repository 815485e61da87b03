"""A small fixed data set for the analytics views, small enough to compute every answer by hand.

Registry `registry.example.com` (provider oci) holds two repositories sharing base layer B1:

    team/app  A0  untagged ('old' deleted 60 d ago)  cfg 5  + B2 2000                      pushed 300 d ago, pulled 5 d ago
              A1  v1 (latest until 10 d ago)        cfg 10 + B1 1000 + a1 100              pushed 200 d ago, pulled 150 d ago
              A2  latest, v2                        cfg 20 + B1 1000 + a2 200              pushed 10 d ago
              A3  untagged                          cfg 30 + B1 1000 + a1 100 + a3 300     pushed 120 d ago
              AI  multi: index of AC1 (amd64: cfg 7 + B1 + m1 400), AC2 (arm64/v8: cfg 8 + B2 + m2 500)
                                                                                           pushed 400 d ago
              AU  untagged index of AU1 (cfg 9 + u1 50)                                    pushed 2 d ago
    svc       B_1 prod, flip (deleted and restored)  cfg 11 + B1 1000 + b1 600             pushed 50 d ago, pulled 1 d ago
              B_2 untagged ('mover' left it 5 d ago) cfg 12 + B1 1000 + b1 600 + b2 700   pushed 45 d ago

Registry `123456789012.dkr.ecr.eu-west-1.amazonaws.com` (provider ecr): `legacy` with one image
whose blobs are unknown (reported size 5000, tag x, pushed 20 d ago) and an `empty` repository.

Times are relative to the moment the data set is written, so the views' now()-based windows
(30 d tag moves, 90 d staleness) give fixed answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, List, Optional, Sequence, Tuple

from analytics import BASE_TABLES
from sources.model import tag_key

OCI = "registry.example.com"
ECR = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
APP, SVC, LEGACY, EMPTY = "team/app", "svc", "legacy", "empty"

DOCKER = "application/vnd.docker.distribution.manifest.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
CONFIG = "application/vnd.oci.image.config.v1+json"

LAYER_SIZES = {
    "B1": 1000, "B2": 2000, "a1": 100, "a2": 200, "a3": 300,
    "m1": 400, "m2": 500, "u1": 50, "b1": 600, "b2": 700,
}


def digest(name: str) -> str:
    """A readable fake digest: sha256:<name padded>."""
    return "sha256:" + name.encode().hex().ljust(64, "0")


@dataclass
class Image:
    name: str
    repository: str
    days_ago: float
    config: Optional[int] = None  # config size (None: no config, e.g. an index)
    layers: Sequence[str] = ()
    children: Sequence[Tuple[str, str, str, Optional[str]]] = ()  # (child name, os, arch, variant)
    pulled_days_ago: Optional[float] = None
    reported: Optional[int] = None  # size_bytes as the registry reports it
    registry: str = OCI
    provider: str = "oci"
    platform: Optional[Tuple[str, str, Optional[str]]] = None

    @property
    def digest(self) -> str:
        return digest(self.name)

    @property
    def content(self) -> int:
        return (self.config or 0) + sum(LAYER_SIZES[name] for name in self.layers)


IMAGES: List[Image] = [
    Image("A0", APP, 300, 5, ["B2"], pulled_days_ago=5),
    Image("A1", APP, 200, 10, ["B1", "a1"], pulled_days_ago=150),
    Image("A2", APP, 10, 20, ["B1", "a2"]),
    Image("A3", APP, 120, 30, ["B1", "a1", "a3"]),
    Image("AI", APP, 400, children=[("AC1", "linux", "amd64", None), ("AC2", "linux", "arm64", "v8")], reported=2508),
    Image("AC1", APP, 400, 7, ["B1", "m1"], platform=("linux", "amd64", None)),
    Image("AC2", APP, 400, 8, ["B2", "m2"], platform=("linux", "arm64", "v8")),
    Image("AU", APP, 2, children=[("AU1", "linux", "amd64", None)], reported=59),
    Image("AU1", APP, 2, 9, ["u1"], platform=("linux", "amd64", None)),
    Image("B_1", SVC, 50, 11, ["B1", "b1"], pulled_days_ago=1),
    Image("B_2", SVC, 45, 12, ["B1", "b1", "b2"]),
    Image("C1", LEGACY, 20, reported=5000, registry=ECR, provider="ecr"),
]
BY_NAME = {image.name: image for image in IMAGES}

# (repository, tag, image, from days ago, to days ago or None = current)
TAG_VERSIONS: List[Tuple[str, str, str, float, Optional[float]]] = [
    (APP, "latest", "A1", 40, 10),
    (APP, "latest", "A2", 10, None),
    (APP, "v1", "A1", 200, None),
    (APP, "v2", "A2", 10, None),
    (APP, "old", "A0", 300, 60),
    (APP, "multi", "AI", 400, None),
    (SVC, "prod", "B_1", 50, None),
    (SVC, "flip", "B_1", 40, 35),
    (SVC, "flip", "B_1", 20, None),
    (SVC, "mover", "B_2", 45, 44),
    (SVC, "mover", "B_1", 44, 25),
    (SVC, "mover", "B_2", 25, 5),
    (LEGACY, "x", "C1", 20, None),
]

REPOSITORIES = [("oci", OCI, APP), ("oci", OCI, SVC), ("ecr", ECR, LEGACY), ("ecr", ECR, EMPTY)]


@dataclass
class Rows:
    now: datetime
    tables: Dict[str, List[Dict[str, Any]]] = field(default_factory=dict)

    def ago(self, days: Optional[float]) -> Optional[datetime]:
        return None if days is None else self.now - timedelta(days=days)


def build_rows(now: Optional[datetime] = None) -> Rows:
    """The rows of every base table, as dicts keyed by column name."""
    rows = Rows(now or datetime.now(timezone.utc).replace(microsecond=0))
    ago = rows.ago
    rows.tables["repositories"] = [
        {"provider": p, "registry": r, "repository": n, "created_at": ago(500), "image_count": None,
         "size_bytes": 5000 if n == LEGACY else None, "description": f"repository {n}"}
        for p, r, n in REPOSITORIES
    ]
    images, layers, manifests = [], [], []
    for image in IMAGES:
        key = {"provider": image.provider, "registry": image.registry, "repository": image.repository}
        is_index = bool(image.children)
        images.append({
            **key,
            "digest": image.digest,
            "media_type": OCI_INDEX if is_index else (OCI_MANIFEST if image.platform else DOCKER) if image.config else DOCKER,
            "size_bytes": image.reported if image.reported is not None else image.content,
            "created_at": ago(image.days_ago),
            "last_pulled_at": ago(image.pulled_days_ago),
            "pull_count": 3 if image.pulled_days_ago is not None else 0,
            "config_digest": digest("cfg-" + image.name) if image.config else None,
            "config_size_bytes": image.config,
            "config_media_type": CONFIG if image.config else None,
            "platform_os": image.platform[0] if image.platform else None,
            "platform_arch": image.platform[1] if image.platform else None,
            "platform_variant": image.platform[2] if image.platform else None,
            "layer_count": len(image.layers) if image.config else None,
            "child_count": len(image.children) if is_index else None,
        })
        for position, name in enumerate(image.layers):
            layers.append({**key, "image_digest": image.digest, "position": position,
                           "digest": digest(name), "size_bytes": LAYER_SIZES[name], "media_type": LAYER})
        for position, (child, os_, arch, variant) in enumerate(image.children):
            manifests.append({**key, "image_digest": image.digest, "position": position, "digest": digest(child),
                              "media_type": OCI_MANIFEST, "platform_os": os_, "platform_arch": arch,
                              "platform_variant": variant, "size_bytes": 400 + position})
    rows.tables["images"] = images
    rows.tables["images__layers"] = layers
    rows.tables["images__manifests"] = manifests
    tags = []
    for repository, tag, name, since, until in TAG_VERSIONS:
        image = BY_NAME[name]
        tags.append({
            "tag_key": tag_key(image.provider, image.registry, repository, tag),
            "provider": image.provider, "registry": image.registry, "repository": repository,
            "tag": tag, "digest": image.digest, "tag_version": f"{tag}-{name}-{since}",
            "valid_from": ago(since), "valid_to": ago(until),
        })
    rows.tables["tags"] = tags
    return rows


def write_duckdb(path: str, now: Optional[datetime] = None, dataset: str = "registry", rows: Optional[Rows] = None) -> Rows:
    """Write the data set (or other `rows`) into a DuckDB file with plain DDL (the contract's types)."""
    import duckdb

    rows = rows or build_rows(now)
    conn = duckdb.connect(path)
    try:
        _write(conn, dataset, rows, "?")
    finally:
        conn.close()
    return rows


def write_dbapi(conn: Any, dataset: str = "registry", now: Optional[datetime] = None) -> Rows:
    """Write the data set through a DB-API connection using %s parameters (psycopg2)."""
    rows = build_rows(now)
    cursor = conn.cursor()
    _write(cursor, dataset, rows, "%s")
    conn.commit()
    return rows


def _write(conn: Any, dataset: str, rows: Rows, mark: str) -> None:
    conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{dataset}"')
    for table, columns in BASE_TABLES.items():
        ddl = ", ".join(f'"{name}" {typ}' for name, typ in columns)
        conn.execute(f'CREATE TABLE "{dataset}"."{table}" ({ddl})')
        names = [name for name, _ in columns]
        values = [tuple(row.get(name) for name in names) for row in rows.tables.get(table, [])]
        if values:
            cols = ", ".join(f'"{n}"' for n in names)
            marks = ", ".join([mark] * len(names))
            conn.executemany(f'INSERT INTO "{dataset}"."{table}" ({cols}) VALUES ({marks})', values)
