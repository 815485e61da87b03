import json

import pytest

from sources.manifests import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    ManifestError,
    child_rows,
    layer_rows,
    parse_manifest,
)

SEED_004_MANIFEST = {
    "schemaVersion": 2,
    "mediaType": DOCKER_MANIFEST,
    "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1862, "digest": "sha256:c"},
    "layers": [
        {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 1292800, "digest": "sha256:l1"},
        {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 10240, "digest": "sha256:l2"},
    ],
}


def test_docker_manifest_gives_config_layers_in_order_and_content_size():
    manifest = parse_manifest(json.dumps(SEED_004_MANIFEST))
    assert manifest.media_type == DOCKER_MANIFEST
    assert manifest.config.size_bytes == 1862
    assert [l.digest for l in manifest.layers] == ["sha256:l1", "sha256:l2"]
    assert manifest.content_size == 1304902
    key = {"provider": "swr", "registry": "r", "repository": "p", "image_digest": "sha256:x"}
    rows = layer_rows(key, manifest)
    assert [(r["position"], r["digest"], r["size_bytes"]) for r in rows] == [(0, "sha256:l1", 1292800), (1, "sha256:l2", 10240)]


@pytest.mark.parametrize("media_type", [OCI_INDEX, DOCKER_MANIFEST_LIST])
def test_index_children_keep_platform_and_order(media_type):
    doc = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": [
            {"digest": "sha256:a", "size": 500, "mediaType": "m", "platform": {"os": "linux", "architecture": "amd64"}},
            {"digest": "sha256:b", "size": "600", "mediaType": "m", "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
        ],
    }
    manifest = parse_manifest(json.dumps(doc))
    assert manifest.is_index and manifest.content_size is None
    rows = child_rows({"image_digest": "sha256:i"}, manifest)
    assert [(r["position"], r["digest"], r["platform_arch"], r["platform_variant"], r["size_bytes"]) for r in rows] == [
        (0, "sha256:a", "amd64", None, 500),
        (1, "sha256:b", "arm64", "v8", 600),
    ]


def test_index_without_media_type_is_recognised():
    assert parse_manifest({"schemaVersion": 2, "manifests": []}).media_type == OCI_INDEX


@pytest.mark.parametrize("raw", ["not json", "[1,2]", "", b"\xff\xfe"])
def test_bad_manifest_raises_manifest_error(raw):
    with pytest.raises(ManifestError):
        parse_manifest(raw)


def test_unsound_fields_are_reported_not_fatal():
    doc = dict(SEED_004_MANIFEST, mediaType="application/x-unknown", layers=[{"digest": "sha256:l", "size": "big"}, "junk"])
    manifest = parse_manifest(doc)
    assert manifest.layers[0].size_bytes is None
    assert any("unknown manifest media type" in p for p in manifest.problems)
    assert any("size" in p for p in manifest.problems)
    assert any("not objects" in p for p in manifest.problems)
