"""What the OCI source must load, from the pushed data set, and what it did load."""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

from emulators.oci import RegistryData
from tests.support import query, table_exists


def expected_images(data: RegistryData) -> Dict[Tuple[str, str], tuple]:
    out = {}
    for (repository, digest), image in data.expected_images().items():
        out[(repository, digest)] = (
            image.media_type,
            image.size_bytes,
            image.created,
            image.config.digest if image.config else None,
            image.config.size if image.config else None,
            *image.platform,
            None if image.is_index else len(image.layers),
            len(image.children) if image.is_index else None,
            len(image.raw),
        )
    return out


def loaded_images(pipeline, registry: str) -> Dict[Tuple[str, str], tuple]:
    rows = query(
        pipeline,
        "SELECT registry, repository, digest, media_type, size_bytes, created_at, config_digest, config_size_bytes,"
        " platform_os, platform_arch, platform_variant, layer_count, child_count, manifest_size_bytes"
        " FROM images WHERE provider = 'oci'",
    )
    out = {}
    for row in rows:
        assert row[0] == registry, f"registry column {row[0]!r}, expected {registry!r}"
        key = (row[1], row[2])
        assert key not in out, f"{key} loaded twice"
        out[key] = tuple(row[3:])
    return out


def expected_layers(data: RegistryData) -> Dict[Tuple[str, str], List[tuple]]:
    return {
        key: [(layer.digest, layer.size, layer.media_type) for layer in image.layers]
        for key, image in data.expected_images().items()
        if not image.is_index
    }


def loaded_layers(pipeline) -> Dict[Tuple[str, str], List[tuple]]:
    rows = query(
        pipeline,
        "SELECT repository, image_digest, position, digest, size_bytes, media_type FROM images__layers"
        " WHERE provider = 'oci' ORDER BY repository, image_digest, position",
    )
    out: Dict[Tuple[str, str], List[tuple]] = {}
    for repository, image_digest, position, *layer in rows:
        layers = out.setdefault((repository, image_digest), [])
        assert position == len(layers)
        layers.append(tuple(layer))
    return out


def expected_children(data: RegistryData) -> Dict[Tuple[str, str], List[tuple]]:
    return {
        key: [(c.digest, c.media_type, c.os, c.arch, c.variant, c.size) for c in image.children]
        for key, image in data.expected_images().items()
        if image.is_index
    }


def loaded_children(pipeline) -> Dict[Tuple[str, str], List[tuple]]:
    rows = query(
        pipeline,
        "SELECT repository, image_digest, position, digest, media_type, platform_os, platform_arch,"
        " platform_variant, size_bytes FROM images__manifests WHERE provider = 'oci'"
        " ORDER BY repository, image_digest, position",
    )
    out: Dict[Tuple[str, str], List[tuple]] = {}
    for repository, image_digest, position, *child in rows:
        children = out.setdefault((repository, image_digest), [])
        assert position == len(children)
        children.append(tuple(child))
    return out


def current_tags(pipeline, registry: str) -> Dict[Tuple[str, str], str]:
    out = {}
    for reg, repository, tag, digest in query(
        pipeline, "SELECT registry, repository, tag, digest FROM tags WHERE provider = 'oci' AND valid_to IS NULL"
    ):
        assert reg == registry
        assert (repository, tag) not in out, f"two open rows for {repository}:{tag}"
        out[(repository, tag)] = digest
    return out


def tag_history(pipeline) -> Dict[Tuple[str, str], List[Tuple[str, bool]]]:
    out: Dict[Tuple[str, str], List[Tuple[str, bool]]] = {}
    for repository, tag, digest, is_open in query(
        pipeline,
        "SELECT repository, tag, digest, valid_to IS NULL FROM tags WHERE provider = 'oci'"
        " ORDER BY valid_from, valid_to NULLS LAST",
    ):
        out.setdefault((repository, tag), []).append((digest, bool(is_open)))
    return out


def snapshot(data: RegistryData) -> Dict[str, Dict]:
    """Expected images, layers and children now (rows stay loaded after a manifest goes away)."""
    return {"images": expected_images(data), "layers": expected_layers(data), "children": expected_children(data)}


def assert_loaded_exactly(pipeline, data: RegistryData, registry: str, earlier: Sequence[Dict[str, Dict]] = ()) -> None:
    """Every reachable digest (and every one loaded earlier) with its size, time, config and
    platform; layers in order; index children; the current tag map."""
    expected: Dict[str, Dict] = {"images": {}, "layers": {}, "children": {}}
    for snap in [*earlier, snapshot(data)]:
        for table, rows in snap.items():
            expected[table].update(rows)
    assert loaded_images(pipeline, registry) == expected["images"]
    assert loaded_layers(pipeline) == expected["layers"]
    assert loaded_children(pipeline) == expected["children"]
    assert current_tags(pipeline, registry) == data.expected_tags()
    if table_exists(pipeline, "load_problems"):  # nothing was loaded only in part
        assert query(pipeline, "SELECT call, object, reason FROM load_problems WHERE provider = 'oci'") == []
