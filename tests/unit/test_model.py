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


def _per_column(table, rows):
    """The reference conversion: one Python list and one `pa.array` per column."""
    return pa.Table.from_arrays(
        [model._column(table, name, [row.get(name) for row in rows], typ) for name, typ in table.columns],
        schema=table.arrow_schema,
    )


def test_batch_struct_conversion_equals_the_per_column_conversion():
    rows = [
        {"provider": "ecr", "registry": "r", "repository": "a", "digest": "sha256:1", "size_bytes": 2**40,
         "created_at": datetime(2024, 1, 1, 12, 30, 1, 123456, tzinfo=timezone.utc), "media_type": "ü\u2603"},
        {"provider": "ecr", "registry": "r", "repository": "a", "digest": "sha256:2", "extra_only_here": [1, 2]},
        {"digest": "sha256:3", "size_bytes": None, "created_at": None, "status": ""},
    ]
    got = model.batch(model.IMAGES, rows)
    want = _per_column(model.IMAGES, rows)
    assert got.select(want.column_names).equals(want)
    assert got.column("extra_only_here").to_pylist() == [None, "[1, 2]", None]


def test_batch_with_a_value_of_the_wrong_type_coerces_only_that_value():
    rows = [{"provider": "ecr", "registry": "r", "repository": "a", "digest": f"sha256:{i}", "size_bytes": i} for i in range(3)]
    rows[1]["size_bytes"] = "12x"  # a number field sent as text
    rows[2]["repository"] = 7  # a text field sent as a number
    table = model.batch(model.IMAGES, rows)
    assert table.column("size_bytes").to_pylist() == [0, None, 2]
    assert table.column("repository").to_pylist() == ["a", "a", "7"]


def test_tag_keys_and_versions_are_compact_json_of_their_parts():
    import hashlib
    import json

    parts = ("ecr", "r.example", 'team/"quoted"\\', "v1-ü\u2603")
    assert model.tag_key(*parts) == json.dumps(list(parts), separators=(",", ":"))
    row = model.tag_row(*parts, "sha256:1")
    text = json.dumps([row["tag_key"], "sha256:1"], separators=(",", ":"))
    assert row["tag_version"] == hashlib.sha256(text.encode()).hexdigest()[:32]
    marker = model.scope_marker("ecr", "r")  # a None part goes through json itself
    assert marker["tag_version"] == hashlib.sha256(b'["registry","ecr","r",null]').hexdigest()[:32]


def test_tag_columns_are_the_tag_rows_and_rows_mix_columns_with_dict_rows():
    pairs = [("latest", "sha256:1"), ("v1", None), ('we"ird/ tag', "sha256:2")]
    columns = model.tag_columns("swr", "reg/ns", "app", pairs)
    expected = [model.tag_row("swr", "reg/ns", "app", tag, digest) for tag, digest in pairs]
    rows = model.Rows()
    rows.add(model.TAGS, model.scope_marker("swr", "reg/ns", "app"))
    rows.add_columns(model.TAGS, columns, len(pairs))
    other = model.Rows()
    other.add_columns(model.TAGS, columns, len(pairs))
    other.add_columns(model.IMAGES, {"provider": ["swr"], "registry": ["r"], "repository": ["a"], "digest": ["d"], "new": [1]}, 1)
    rows.merge(other)
    assert len(rows) == 8 and rows.count(model.TAGS) == 7 and len(other) == 0
    tables = {table.name: arrow for table, arrow in rows.arrow_tables()}
    assert tables["tags"].schema == model.batch(model.TAGS, expected).schema
    assert tables["tags"].to_pylist() == [model.scope_marker("swr", "reg/ns", "app")] + expected + expected
    assert tables["images"].column("new").to_pylist() == ["1"]  # an extra column, as batch() keeps it
    assert len(rows) == 0 and rows.arrow_tables() == []
