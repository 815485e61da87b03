"""Units: Image.list / Registry.list records → unified rows, names, settings."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from emulators.yandex import rfc3339_ns
from sources.errors import NotFoundError
from sources.model import IMAGE_LAYERS, IMAGES, LOAD_PROBLEMS, REPOSITORIES, TAGS, Rows
from sources.yandex.helpers import (
    YANDEX_IMAGES,
    YANDEX_REGISTRIES,
    UnitMapper,
    as_list,
    registry_row,
    repository_of,
    select_units,
)
from tests.support import rows_as_dicts

REGISTRY_ID = "crpabcdefghij0123456"
DIGEST = "sha256:" + "a" * 64


def record(**overrides):
    doc = {
        "id": "crpimage000000000001",
        "name": f"{REGISTRY_ID}/team/app",
        "digest": DIGEST,
        "compressedSize": "9223372036854775807",
        "config": {"id": "crpblobconfig0000001", "digest": "sha256:" + "c" * 64, "size": "7023", "urls": []},
        "layers": [
            {"id": "crpbloblayer00000001", "digest": "sha256:" + "1" * 64, "size": "31357311", "urls": []},
            {"id": "crpbloblayer00000002", "digest": "sha256:" + "2" * 64, "size": "1024", "urls": ["https://x/y"]},
        ],
        "tags": ["latest", "1.0"],
        "createdAt": "2024-05-06T07:08:09.123456789Z",
    }
    doc.update(overrides)
    return doc


def mapped(records, known=frozenset(), repositories=None, repository_ids=None):
    rows = Rows()
    mapper = UnitMapper(REGISTRY_ID, lambda registry, repository: set(known), rows)
    for doc in records:
        mapper.add_image(doc)
    mapper.finish(repository_ids or {"team/app": "crprepo0000000000001"}, repositories)
    return rows_as_dicts(rows)


@pytest.mark.parametrize(
    "text, micros",
    [
        ("2024-05-06T07:08:09Z", 0),
        ("2024-05-06T07:08:09.1Z", 100000),
        ("2024-05-06T07:08:09.12Z", 120000),
        ("2024-05-06T07:08:09.123Z", 123000),
        ("2024-05-06T07:08:09.1234Z", 123400),
        ("2024-05-06T07:08:09.12345Z", 123450),
        ("2024-05-06T07:08:09.123456Z", 123456),
        ("2024-05-06T07:08:09.1234567Z", 123456),
        ("2024-05-06T07:08:09.12345678Z", 123456),
        ("2024-05-06T07:08:09.123456789Z", 123456),
        ("2024-05-06T07:08:09.999999999Z", 999999),
    ],
)
def test_created_at_with_0_to_9_fraction_digits_keeps_microseconds(text, micros):
    rows = mapped([record(createdAt=text)])
    assert rows[IMAGES.name][0]["created_at"] == datetime(2024, 5, 6, 7, 8, 9, micros, tzinfo=timezone.utc)


def test_emulator_renders_protobuf_fractions():
    base = int(datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone.utc).timestamp()) * 10**9
    assert rfc3339_ns(base) == "2024-05-06T07:08:09Z"
    assert rfc3339_ns(base + 120_000_000) == "2024-05-06T07:08:09.120Z"
    assert rfc3339_ns(base + 123_456_000) == "2024-05-06T07:08:09.123456Z"
    assert rfc3339_ns(base + 123_456_789) == "2024-05-06T07:08:09.123456789Z"


def test_int64_strings_become_integers_and_blobs_map_to_layers():
    rows = mapped([record()])
    image = rows[IMAGES.name][0]
    assert image["size_bytes"] == 9223372036854775807
    assert (image["config_digest"], image["config_size_bytes"], image["layer_count"]) == ("sha256:" + "c" * 64, 7023, 2)
    assert (image["registry"], image["repository"], image["provider"]) == (f"cr.yandex/{REGISTRY_ID}", "team/app", "yandex")
    layers = rows[IMAGE_LAYERS.name]
    assert [(l["position"], l["digest"], l["size_bytes"], l["blob_id"]) for l in layers] == [
        (0, "sha256:" + "1" * 64, 31357311, "crpbloblayer00000001"),
        (1, "sha256:" + "2" * 64, 1024, "crpbloblayer00000002"),
    ]
    assert layers[1]["urls"] == '["https://x/y"]'
    extra = rows[YANDEX_IMAGES.name][0]
    assert (extra["image_id"], extra["config_blob_id"], extra["name"]) == ("crpimage000000000001", "crpblobconfig0000001", f"{REGISTRY_ID}/team/app")


def test_tags_markers_and_repository_totals():
    second = record(digest="sha256:" + "b" * 64, tags=[], createdAt="2025-01-01T00:00:00Z", layers=record()["layers"][:1])
    rows = mapped([record(), second])
    tags = [r for r in rows[TAGS.name] if r["tag"] is not None]
    assert sorted((t["tag"], t["digest"]) for t in tags) == [("1.0", DIGEST), ("latest", DIGEST)]
    markers = [r for r in rows[TAGS.name] if r["tag"] is None]
    assert [(m["scope"], m["registry"], m["repository"]) for m in markers] == [("registry", f"cr.yandex/{REGISTRY_ID}", None)]
    (repo,) = rows[REPOSITORIES.name]
    # distinct blobs: config 7023 + layers 31357311 + 1024 (the second image shares them)
    assert (repo["image_count"], repo["size_bytes"], repo["repository_id"]) == (2, 7023 + 31357311 + 1024, "crprepo0000000000001")
    assert repo["updated_at"] == datetime(2025, 1, 1, tzinfo=timezone.utc)


def test_repository_filter_marks_each_repository():
    rows = mapped([record()], repositories=["team/app", "gone"])
    markers = [(r["scope"], r["repository"]) for r in rows[TAGS.name] if r["tag"] is None]
    assert markers == [("repository", "team/app"), ("repository", "gone")]


def test_known_digest_emits_tags_but_no_image_rows():
    rows = mapped([record()], known={DIGEST})
    assert IMAGES.name not in rows and IMAGE_LAYERS.name not in rows and YANDEX_IMAGES.name not in rows
    assert len([r for r in rows[TAGS.name] if r["tag"]]) == 2


def test_bad_values_become_load_problems_not_failures():
    rows = mapped([record(compressedSize="12x", createdAt="yesterday")])
    image = rows[IMAGES.name][0]
    assert image["size_bytes"] is None and image["created_at"] is None
    reasons = [p["object"] for p in rows[LOAD_PROBLEMS.name]]
    assert any("compressedSize" in r for r in reasons) and any("createdAt" in r for r in reasons)


def test_image_listed_twice_and_tag_on_two_images():
    newer = record(digest="sha256:" + "b" * 64, tags=["latest"], createdAt="2030-01-01T00:00:00Z")
    rows = mapped([record(), record(), newer])
    assert len(rows[IMAGES.name]) == 2
    current = {t["tag"]: t["digest"] for t in rows[TAGS.name] if t["tag"]}
    assert current == {"latest": "sha256:" + "b" * 64, "1.0": DIGEST}


def test_unknown_fields_are_kept_as_columns():
    rows = mapped([record(labels={"a": "b"}, platformOs="linux")])
    image = rows[IMAGES.name][0]
    assert image["labels"] == {"a": "b"} and image["platform_os"] == "linux"


def test_registry_row_keeps_status_and_labels():
    rows = Rows()
    row = registry_row(
        {"id": REGISTRY_ID, "folderId": "b1gfolder", "name": "main", "status": "ACTIVE", "createdAt": "2023-01-02T03:04:05.5Z", "labels": {"env": "prod"}},
        rows,
    )
    assert row == {
        "registry_id": REGISTRY_ID,
        "registry": f"cr.yandex/{REGISTRY_ID}",
        "folder_id": "b1gfolder",
        "name": "main",
        "status": "ACTIVE",
        "created_at": datetime(2023, 1, 2, 3, 4, 5, 500000, tzinfo=timezone.utc),
        "labels": '{"env":"prod"}',
    }
    assert YANDEX_REGISTRIES.primary_key == ("registry_id",)


def test_names_and_settings():
    assert repository_of(f"{REGISTRY_ID}/team/app", REGISTRY_ID) == "team/app"
    assert repository_of("team/app", REGISTRY_ID) == "team/app"  # a name without the registry id
    assert as_list('["b1g1", "b1g2"]') == ["b1g1", "b1g2"]
    assert as_list("b1g1, b1g2") == ["b1g1", "b1g2"]
    assert as_list(["b1g1"]) == ["b1g1"] and as_list(None) == []
    assert as_list("[b1g1, b1g2") == ["[b1g1", "b1g2"] and as_list([" b1g1 ", ""]) == ["b1g1"]  # not JSON; blanks


def test_select_units():
    other = "crpotherregistry0001"
    registries = {REGISTRY_ID: {"team/app": "1", "web": "2"}, other: {"web": "3"}}
    assert [(u.registry_id, u.repositories) for u in select_units(registries, [])] == [(REGISTRY_ID, None), (other, None)]
    units = select_units(registries, [f"cr.yandex/{REGISTRY_ID}/team/app", "web"])
    assert [(u.registry_id, u.repositories) for u in units] == [(REGISTRY_ID, ["team/app", "web"]), (other, ["web"])]
    with pytest.raises(NotFoundError) as info:
        select_units(registries, [f"{other}/team/app"])
    assert "team/app" in str(info.value) and other in str(info.value)


@pytest.mark.parametrize("field, value", [("tags", "latest"), ("tags", {"latest": 1}), ("layers", "sha256:abc")])
def test_a_list_field_sent_as_something_else_is_reported_and_skipped(field, value):
    # iterating the string would give one tag (or layer) per character
    rows = mapped([record(**{field: value})])
    [image] = rows[IMAGES.name]
    assert image["size_bytes"] == 9223372036854775807 and image["config_digest"] == "sha256:" + "c" * 64
    tags = sorted(row["tag"] for row in rows[TAGS.name] if row["tag"])
    assert tags == ([] if field == "tags" else ["1.0", "latest"])
    assert len(rows.get(IMAGE_LAYERS.name, [])) == (0 if field == "layers" else 2)
    [problem] = rows[LOAD_PROBLEMS.name]
    assert (problem["registry"], problem["repository"], problem["call"], problem["object"]) == (
        f"cr.yandex/{REGISTRY_ID}", "team/app", "Image.list", f"{DIGEST} {field}")
    assert problem["reason"].startswith(f"{field}: expected a list, got {type(value).__name__} ") and problem["reason"].endswith("; skipped")


def test_tag_entries_that_are_objects_or_empty_are_reported_the_others_load():
    rows = mapped([record(tags=["latest", {"name": "x"}, "", 7])])
    assert sorted(row["tag"] for row in rows[TAGS.name] if row["tag"]) == ["7", "latest"]
    reasons = sorted(p["reason"] for p in rows[LOAD_PROBLEMS.name])
    assert reasons == ["tags: an empty tag name; skipped", "tags: expected text, got dict; skipped"]


def test_layer_entries_that_are_not_objects_are_reported_the_others_load():
    doc = record()
    doc["layers"] = [doc["layers"][0], "sha256:" + "9" * 64]
    rows = mapped([doc])
    assert [row["digest"] for row in rows[IMAGE_LAYERS.name]] == ["sha256:" + "1" * 64]
    [problem] = rows[LOAD_PROBLEMS.name]
    assert (problem["object"], problem["reason"]) == (f"{DIGEST} layers", "layers: 1 of 2 entries are not objects; skipped")
