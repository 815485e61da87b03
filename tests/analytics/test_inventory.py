"""The storage and cleanup views on a generated inventory, checked against the inventory itself.

A second, larger shape than the fixed data set: several registries, Docker and OCI media types
for the same base layers, multi-arch indexes, untagged images; expected values are computed
from `emulators.inventory.Inventory`, never written down.
"""

from __future__ import annotations

from datetime import datetime, timezone

import duckdb

import analytics
from emulators.inventory import Inventory
from sources.model import tag_key
from tests.analytics import dataset


def _time(ns):
    return None if ns is None else datetime.fromtimestamp(ns / 1e9, tz=timezone.utc)


def inventory_rows(inv: Inventory) -> dataset.Rows:
    rows = dataset.Rows(datetime.now(timezone.utc))
    t = rows.tables = {"repositories": [], "images": [], "images__layers": [], "images__manifests": [], "tags": []}
    for repo in inv.repositories():
        key = {"provider": "oci", "registry": repo.registry, "repository": repo.name}
        t["repositories"].append({**key, "created_at": _time(repo.created_ns)})
        for digest, image in repo.images.items():
            t["images"].append({
                **key, "digest": digest, "media_type": image.media_type, "size_bytes": image.content_size,
                "created_at": _time(image.created_ns), "last_pulled_at": _time(image.last_pulled_ns),
                "config_digest": image.config.digest if image.config else None,
                "config_size_bytes": image.config.size if image.config else None,
            })
            for position, layer in enumerate(image.layers):
                t["images__layers"].append({**key, "image_digest": digest, "position": position,
                                            "digest": layer.digest, "size_bytes": layer.size})
            for position, child in enumerate(image.children):
                t["images__manifests"].append({**key, "image_digest": digest, "position": position,
                                               "digest": child.digest, "size_bytes": len(child.raw)})
        for tag, digest in repo.tags.items():
            t["tags"].append({**key, "tag_key": tag_key("oci", repo.registry, repo.name, tag), "tag": tag,
                              "digest": digest, "tag_version": tag, "valid_from": rows.now, "valid_to": None})
    return rows


def blobs_of(image):
    return ([image.config] if image.config else []) + list(image.layers)


def test_storage_and_untagged_match_the_inventory(tmp_path):
    inv = Inventory(seed=5, registries=("r1.example", "r2.example"), repositories=8, images=90,
                    multiarch_every=6, untagged_every=5)
    path = str(tmp_path / "registry_etl.duckdb")
    dataset.write_duckdb(path, rows=inventory_rows(inv))

    expected_repo, expected_registry, expected_untagged = {}, {}, set()
    for repo in inv.repositories():
        manifests = [image for image in repo.images.values() if not image.is_index]
        unique = {blob.digest: blob.size for image in manifests for blob in blobs_of(image)}
        expected_repo[(repo.registry, repo.name)] = (
            len(repo.top_level()),
            sum(image.content_size for image in manifests),
            sum(unique.values()),
        )
        expected_registry.setdefault(repo.registry, {}).update(unique)
        tagged = set(repo.tags.values())
        expected_untagged |= {(repo.name, image.digest) for image in repo.top_level() if image.digest not in tagged}
    assert expected_untagged and any(image.is_index for repo in inv.repositories() for image in repo.images.values())

    analytics.create_views(path)
    with duckdb.connect(path, read_only=True) as conn:
        got = {
            (registry, repository): (images, total, unique)
            for registry, repository, images, total, unique in conn.execute(
                "SELECT registry, repository, image_count, total_bytes, unique_bytes FROM registry.repository_storage"
            ).fetchall()
        }
        assert got == expected_repo
        registries = dict(conn.execute("SELECT registry, unique_bytes FROM registry.registry_storage").fetchall())
        assert registries == {name: sum(blobs.values()) for name, blobs in expected_registry.items()}
        untagged = set(conn.execute("SELECT repository, digest FROM registry.untagged_images").fetchall())
        assert untagged == expected_untagged
        # the children of every (tagged) index are never listed
        children = {c.digest for repo in inv.repositories() for i in repo.images.values() for c in i.children}
        assert not {digest for _, digest in untagged} & children
        # growth adds up to the registry's unique bytes
        growth = dict(conn.execute(
            "SELECT registry, MAX(cumulative_unique_bytes) FROM registry.storage_growth WHERE period = 'week' GROUP BY registry"
        ).fetchall())
        assert growth == registries
