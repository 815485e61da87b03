"""NCP answers → unified rows, without a server."""

from __future__ import annotations

from datetime import datetime, timezone

from sources.model import IMAGE_MANIFESTS, IMAGES, LOAD_PROBLEMS, REPOSITORIES, TAGS, Rows
from sources.ncp.helpers import NCP_IMAGES, NCP_TAGS, TagMapper, registry_endpoint, registry_row, repository_rows
from tests.support import rows_as_dicts

UTC = timezone.utc
REG = "myreg.kr.ncr.ntruss.com"
INDEX = "sha256:" + "a" * 64
AMD, ARM = "sha256:" + "b" * 64, "sha256:" + "c" * 64
SINGLE = "sha256:" + "d" * 64
OCI = "application/vnd.oci.image.manifest.v1+json"


def rows_of(rows: Rows, table) -> list:
    return rows_as_dicts(rows).get(table.name, [])


def test_registry_endpoint_per_region():
    assert registry_endpoint("myreg", "kr") == "myreg.kr.ncr.ntruss.com"
    assert registry_endpoint("myreg", "sgn") == "myreg.sg.ncr.ntruss.com"
    assert registry_endpoint("myreg", "jpn") == "myreg.jp.ncr.ntruss.com"
    assert registry_endpoint("myreg", "kr", {"end_point": "https://custom.example.com/"}) == "custom.example.com"


def test_registry_row_keeps_every_field():
    rows = Rows()
    doc = {"name": "myreg", "bucket": "b", "created": 1711928488000, "end_point": REG, "status": "RUNNING",
           "scan_on_push_enabled": True, "brand_new": 1}
    row = registry_row(doc, REG, "kr", rows)
    assert row["created_at"] == datetime(2024, 3, 31, 23, 41, 28, tzinfo=UTC)
    assert (row["registry_name"], row["scan_on_push_enabled"], row["brand_new"]) == ("myreg", True, 1)


def test_repository_rows_from_an_ncp_image():
    rows = Rows()
    doc = {"name": "team/app", "namespace": "myreg", "description": "d", "last_updated": 1711928488000,
           "pull_count": 7, "can_edit": True, "status": 0, "repository_type": "image"}
    assert repository_rows(doc, REG, "myreg", rows) == "team/app"
    [repo] = rows_of(rows, REPOSITORIES)
    assert (repo["repository"], repo["pull_count"], repo["description"]) == ("team/app", 7, "d")
    assert repo["updated_at"] == datetime(2024, 3, 31, 23, 41, 28, tzinfo=UTC)
    [extra] = rows_of(rows, NCP_IMAGES)
    assert (extra["namespace"], extra["status"], extra["last_updated_raw"]) == ("myreg", "0", "1711928488000")


def entry(digest, arch, created, variant=None, size=100):
    return {"architecture": arch, "os": "linux", "variant": variant, "digest": digest, "size": size,
            "created": created, "updated": created, "latest_pulled": None, "mediaType": OCI}


def test_single_and_multi_arch_tags_with_both_time_formats():
    rows = Rows()
    mapper = TagMapper(REG, "team/app", rows)
    mapper.add({"name": "v1", "digest": SINGLE, "full_size": 500, "last_updated": 1711928488000,
                "images": [entry(SINGLE, "amd64", 1711928488123, size=None)]})
    mapper.add({"name": "latest", "digest": SINGLE, "full_size": 500, "images": [entry(SINGLE, "amd64", 1711928488123)]})
    mapper.add({"name": "multi", "digest": INDEX, "full_size": 300, "last_updated": "2024-04-01T00:00:00.500Z",
                "images": [entry(AMD, "amd64", "2024-04-01T00:00:00.250Z", size=300),
                           entry(ARM, "arm64", 1711929600100, variant="v8", size=280)]})
    mapper.finish()
    images = {row["digest"]: row for row in rows_of(rows, IMAGES)}
    assert set(images) == {SINGLE, INDEX, AMD, ARM}  # SINGLE once although two tags point at it
    assert images[SINGLE]["size_bytes"] == 500  # no per-platform size: the tag's full_size
    assert images[SINGLE]["created_at"] == datetime(2024, 3, 31, 23, 41, 28, 123000, tzinfo=UTC)
    assert (images[SINGLE]["platform_os"], images[SINGLE]["platform_arch"], images[SINGLE]["media_type"]) == ("linux", "amd64", OCI)
    assert images[INDEX]["child_count"] == 2 and images[INDEX]["size_bytes"] == 300
    assert images[INDEX]["created_at"] == datetime(2024, 4, 1, 0, 0, 0, 100000, tzinfo=UTC)  # the earliest child
    assert images[AMD]["created_at"] == datetime(2024, 4, 1, 0, 0, 0, 250000, tzinfo=UTC)
    assert (images[ARM]["platform_arch"], images[ARM]["platform_variant"]) == ("arm64", "v8")
    links = rows_of(rows, IMAGE_MANIFESTS)
    assert [(l["image_digest"], l["position"], l["digest"], l["size_bytes"]) for l in links] == [
        (INDEX, 0, AMD, 300), (INDEX, 1, ARM, 280)]
    tags = {row["tag"]: row["digest"] for row in rows_of(rows, TAGS)}
    assert tags == {"v1": SINGLE, "latest": SINGLE, "multi": INDEX}
    ncp_tags = {row["tag"]: row for row in rows_of(rows, NCP_TAGS)}
    assert ncp_tags["multi"]["last_updated"] == datetime(2024, 4, 1, 0, 0, 0, 500000, tzinfo=UTC)
    assert ncp_tags["multi"]["platform_count"] == 2
    assert rows_of(rows, LOAD_PROBLEMS) == []


def test_unsound_values_are_reported_and_the_rest_is_loaded():
    rows = Rows()
    mapper = TagMapper(REG, "team/app", rows)
    mapper.add({"name": "v1", "digest": SINGLE, "full_size": "huge", "images": [entry(SINGLE, "amd64", "yesterday")]})
    mapper.add({"name": "broken"})
    mapper.finish()
    [image] = rows_of(rows, IMAGES)
    assert image["created_at"] is None and image["size_bytes"] == 100
    problems = rows_of(rows, LOAD_PROBLEMS)
    assert {p["reason"].split(":")[0] for p in problems} == {"full_size", "created", "updated", "tag without a name or a digest"}
    assert [row["tag"] for row in rows_of(rows, TAGS)] == ["v1"]


def test_images_that_are_not_a_list_are_reported_not_iterated():
    # a string would otherwise be walked character by character (and an object key by key)
    rows = Rows()
    mapper = TagMapper(REG, "team/app", rows)
    mapper.add({"name": "v1", "digest": SINGLE, "full_size": 500, "images": "linux/amd64"})
    mapper.add({"name": "v2", "digest": INDEX, "full_size": 300, "images": {"digest": AMD}})
    mapper.finish()
    images = {row["digest"]: row for row in rows_of(rows, IMAGES)}
    assert {d: (r["size_bytes"], r["platform_arch"]) for d, r in images.items()} == {SINGLE: (500, None), INDEX: (300, None)}
    assert rows_of(rows, IMAGE_MANIFESTS) == []
    assert {row["tag"]: row["digest"] for row in rows_of(rows, TAGS)} == {"v1": SINGLE, "v2": INDEX}
    assert {row["tag"]: row["platform_count"] for row in rows_of(rows, NCP_TAGS)} == {"v1": 0, "v2": 0}
    problems = [(p["registry"], p["repository"], p["call"], p["object"], p["reason"]) for p in rows_of(rows, LOAD_PROBLEMS)]
    assert [p[:4] for p in problems] == [(REG, "team/app", "ListTags", f"v1 {SINGLE}"), (REG, "team/app", "ListTags", f"v2 {INDEX}")]
    assert problems[0][4] == "images: expected a list, got str 'linux/amd64'"
    assert problems[1][4].startswith("images: expected a list, got dict {'digest': 'sha256:bbbb")


def test_digests_already_loaded_get_no_image_or_link_rows_again():
    rows = Rows()
    mapper = TagMapper(REG, "team/app", rows, known={INDEX, SINGLE})
    mapper.add({"name": "v1", "digest": SINGLE, "full_size": 500, "images": [entry(SINGLE, "amd64", 1711928488123)]})
    mapper.add({"name": "multi", "digest": INDEX, "full_size": 300,
                "images": [entry(AMD, "amd64", 1711928488123), entry(ARM, "arm64", 1711928488123, variant="v8")]})
    mapper.finish()
    assert rows_of(rows, IMAGES) == [] and rows_of(rows, IMAGE_MANIFESTS) == []
    assert {row["tag"]: row["digest"] for row in rows_of(rows, TAGS)} == {"v1": SINGLE, "multi": INDEX}
    assert [row["tag"] for row in rows_of(rows, NCP_TAGS)] == ["v1", "multi"]
    # a known index whose child is tagged on its own: the child is new, so it gets its row
    rows = Rows()
    mapper = TagMapper(REG, "team/app", rows, known={INDEX})
    mapper.add({"name": "amd", "digest": AMD, "images": [entry(AMD, "amd64", 1711928488123)]})
    mapper.finish()
    assert [row["digest"] for row in rows_of(rows, IMAGES)] == [AMD]
