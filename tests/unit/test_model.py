from datetime import datetime, timezone

import pyarrow as pa

from sources import model


def test_batch_types_follow_the_contract_and_keeps_unknown_fields():
    table = model.batch(
        model.IMAGES,
        [
            {"provider": "ecr", "registry": "r", "repository": "a", "digest": "sha256:1", "size_bytes": 5,
             "created_at": datetime(2024, 1, 1, tzinfo=timezone.utc), "brand_new_field": {"x": 1}},
            {"provider": "ecr", "registry": "r", "repository": "a", "digest": "sha256:2", "size_bytes": None},
        ],
    )
    assert table.schema.field("size_bytes").type == pa.int64()
    assert table.schema.field("created_at").type == pa.timestamp("us", tz="UTC")
    assert table.column("brand_new_field").to_pylist() == ['{"x": 1}', None]


def test_tag_keys_cannot_collide():
    assert model.tag_key("oci", "a", "bc", "t") != model.tag_key("oci", "ab", "c", "t")
    assert model.tag_key("oci", "r", "a:b", "t") != model.tag_key("oci", "r", "a", "b:t")


def test_tag_version_changes_with_digest_only():
    one = model.tag_row("ecr", "r", "a", "latest", "sha256:1")
    two = model.tag_row("ecr", "r", "a", "latest", "sha256:2")
    assert one["tag_key"] == two["tag_key"] and one["tag_version"] != two["tag_version"]
    assert model.tag_row("ecr", "r", "a", "latest", "sha256:1") == one


def test_scope_markers_are_not_tags():
    marker = model.scope_marker("ecr", "r")
    assert marker["tag"] is None and marker["scope"] == "registry"
    assert model.scope_marker("ecr", "r", "a")["scope"] == "repository"
