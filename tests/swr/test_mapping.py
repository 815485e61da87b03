"""SWR records to unified rows, without a server: the seed record, odd records, error bodies."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
import requests

from emulators.swr import SEED_DIGEST, SEED_MANIFEST, SEED_SIZE
from sources import model
from sources.swr.helpers import (
    Problems,
    describe_swr_error,
    map_repository,
    map_tags,
    parse_content_range,
    registry_host,
    registry_name,
    tags_path,
)

REGISTRY = registry_name(registry_host("cn-north-4"), "namespace")

# seed 004's response example, as the documentation prints it
SEED_RECORD = {
    "id": 0,
    "repo_id": 0,
    "Tag": "latest",
    "image_id": "741f24a795d6d93d7c6edd11780d63c13e16c39615dd9d223378a57a836f2ee6",
    "manifest": SEED_MANIFEST,
    "digest": SEED_DIGEST,
    "schema": 2,
    "path": "192.158.24.86/namespace/busybox:latest",
    "internal_path": "10.125.0.198:20202/namespace/busybox:latest",
    "size": 1304902,
    "is_trusted": False,
    "created": "2018-07-06T06:18:55Z",
    "updated": "2018-07-06T06:18:55Z",
    "deleted": None,
    "scanned": False,
    "tag_type": 0,
}


def collected(rows: model.Rows):
    """Every table's rows as dicts, as they leave for dlt (the `tags` and `swr_tags` rows are
    built as columns; a dict row's missing columns read as None)."""
    return {table.name: arrow.to_pylist() for table, arrow in rows.arrow_tables()}


def map_records(records, known=frozenset()):
    rows = model.Rows()
    count = map_tags(REGISTRY, "busybox", records, rows, Problems(rows, REGISTRY, "busybox", "list_tags"), known)
    return count, collected(rows)


def test_the_seed_record_maps_to_image_layers_and_tag():
    count, tables = map_records([SEED_RECORD])
    assert count == 1
    (image,) = tables["images"]
    assert image["digest"] == SEED_DIGEST and image["size_bytes"] == SEED_SIZE == 1304902
    assert image["config_digest"] == "sha256:741f24a795d6d93d7c6edd11780d63c13e16c39615dd9d223378a57a836f2ee6"
    assert image["config_size_bytes"] == 1862 and image["layer_count"] == 2
    assert image["media_type"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert image["created_at"] == datetime(2018, 7, 6, 6, 18, 55, tzinfo=timezone.utc)
    assert [(l["position"], l["digest"], l["size_bytes"]) for l in tables["images__layers"]] == [
        (0, "sha256:8ac8bfaff55af948c796026ee867448c5b5b5d9dd3549f4006d9759b25d4a893", 1292800),
        (1, "sha256:77ddbf3a9fe11e81761a0f9df43a28e3e6f29bbb53c0c8cf71cd7efa69729aed", 10240),
    ]
    (tag,) = tables["tags"]
    assert (tag["registry"], tag["repository"], tag["tag"], tag["digest"]) == (REGISTRY, "busybox", "latest", SEED_DIGEST)
    (swr_tag,) = tables["swr_tags"]
    assert swr_tag["image_id"] == SEED_RECORD["image_id"] and swr_tag["internal_path"] == SEED_RECORD["internal_path"]
    assert swr_tag["deleted_at"] is None and swr_tag["is_trusted"] is False and swr_tag["tag_type"] == 0
    assert "load_problems" not in tables


def test_digests_are_mapped_once_and_known_ones_not_at_all():
    second = {**SEED_RECORD, "Tag": "1.36", "id": 1}
    count, tables = map_records([SEED_RECORD, second])
    assert count == 2 and len(tables["tags"]) == 2 and len(tables["images"]) == 1
    count, tables = map_records([SEED_RECORD, second], known={SEED_DIGEST})
    assert count == 2 and "images" not in tables and "images__layers" not in tables


def test_nanosecond_times_and_a_lowercase_tag_key_are_read():
    record = {**SEED_RECORD, "created": "2026-03-04T05:06:07.123456789Z"}
    record["tag"] = record.pop("Tag")
    _, tables = map_records([record])
    assert tables["images"][0]["created_at"] == datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=timezone.utc)
    assert tables["tags"][0]["tag"] == "latest"


@pytest.mark.parametrize(
    "manifest,reason",
    [("{not json", "not valid JSON"), ("[]", "not an object"), (None, "no manifest"), ("", "no manifest")],
)
def test_an_unreadable_manifest_keeps_tag_and_image_and_records_the_problem(manifest, reason):
    _, tables = map_records([{**SEED_RECORD, "manifest": manifest}])
    (image,) = tables["images"]
    assert image["size_bytes"] == SEED_SIZE and image.get("layer_count") is None
    assert "images__layers" not in tables
    assert len(tables["tags"]) == 1
    (problem,) = tables["load_problems"]
    assert reason in problem["reason"] and problem["object"] == "busybox:latest" and problem["call"] == "list_tags"


def test_a_manifest_list_gives_children_rows():
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
        "manifests": [
            {"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "size": 528,
             "digest": "sha256:" + "a" * 64, "platform": {"architecture": "amd64", "os": "linux"}},
            {"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "size": 529,
             "digest": "sha256:" + "b" * 64, "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
        ],
    }
    _, tables = map_records([{**SEED_RECORD, "manifest": json.dumps(index), "tag_type": 1, "size": 9999}])
    (image,) = tables["images"]
    assert image["media_type"] == index["mediaType"] and image["child_count"] == 2 and image["size_bytes"] == 9999
    assert [(c["position"], c["platform_arch"], c["platform_variant"], c["size_bytes"]) for c in tables["images__manifests"]] == [
        (0, "amd64", None, 528), (1, "arm64", "v8", 529)
    ]


def test_a_bad_value_is_a_problem_not_a_failure():
    _, tables = map_records([{**SEED_RECORD, "size": "big", "created": "yesterday"}])
    image = tables["images"][0]
    assert image.get("size_bytes") is None and image.get("created_at") is None and image["layer_count"] == 2
    assert sorted(p["reason"].split(":")[0] for p in tables["load_problems"]) == ["created", "size"]


def test_repository_record_maps_to_unified_and_provider_rows():
    record = {
        "name": "group/app", "category": "linux", "description": "d", "size": "123", "is_public": False,
        "num_images": 3, "num_download": 7, "created_at": "2025-01-02T03:04:05Z",
        "updated_at": "2025-02-03T04:05:06.000000001Z", "logo": "", "url": "",
        "path": "swr.cn-north-4.myhuaweicloud.com/namespace/group/app", "internal_path": "10.0.0.1:20202/namespace/group/app",
        "domain_name": "dom", "namespace": "namespace", "tags": ["a", "b"], "status": False, "total_range": 2,
        "brand_new_field": {"x": 1},
    }
    rows = model.Rows()
    assert map_repository(REGISTRY, record, rows, Problems(rows, REGISTRY, "group/app", "list_repositories")) == "group/app"
    tables = collected(rows)
    (repo,) = tables["repositories"]
    assert (repo["size_bytes"], repo["image_count"], repo["pull_count"]) == (123, 3, 7)
    assert repo["updated_at"] == datetime(2025, 2, 3, 4, 5, 6, tzinfo=timezone.utc)
    assert repo["path"] == f"{REGISTRY}/group/app"
    (extra,) = tables["swr_repositories"]
    assert extra["tags"] == '["a", "b"]' and extra["total_range"] == 2 and extra["brand_new_field"] == '{"x": 1}'


def test_repository_names_with_slashes_are_sent_with_dollar():
    assert tags_path("namespace", "group/sub/app") == "/v2/manage/namespaces/namespace/repos/group%24sub%24app/tags"


@pytest.mark.parametrize(
    "header,expected", [("0-100/2000", (0, 2000)), ("1000-1000/2000", (1000, 2000)), (None, None), ("items 5-9/10", (5, 10))]
)
def test_content_range_is_read(header, expected):
    assert parse_content_range(header) == expected


def _response(status, body):
    response = requests.Response()
    response.status_code = status
    response._content = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    return response


def test_error_bodies_of_service_and_gateway_are_described():
    assert describe_swr_error(_response(404, [{"errorCode": "SVCSTG.SWR.4040003", "errorMessage": "Repository not found"}])) == (
        "SVCSTG.SWR.4040003: Repository not found"
    )
    text = describe_swr_error(_response(401, {"error_code": "APIG.0307", "error_msg": "The token must be updated.", "request_id": "r1"}))
    assert text.startswith("APIG.0307: The token must be updated.") and "auth_token" in text and "r1" in text
    assert describe_swr_error(_response(502, "<html>bad gateway</html>")) == "<html>bad gateway</html>"


def test_a_repeated_time_is_read_once_and_a_repeated_bad_one_reported_each_time():
    """Times are remembered per repository (records repeat them); a bad one never is."""
    records = [
        {**SEED_RECORD, "Tag": "a", "created": "2018-07-06T06:18:55.123456789Z", "updated": "yesterday"},
        {**SEED_RECORD, "Tag": "b", "created": "2018-07-06T06:18:55.123456789Z", "updated": "yesterday"},
    ]
    _, tables = map_records(records)
    expected = datetime(2018, 7, 6, 6, 18, 55, 123456, tzinfo=timezone.utc)
    assert [t["created_at"] for t in tables["swr_tags"]] == [expected, expected]
    assert [t["updated_at"] for t in tables["swr_tags"]] == [None, None]
    assert sorted(p["object"] for p in tables["load_problems"]) == ["busybox:a", "busybox:b"]
    assert all("updated" in p["reason"] and "yesterday" in p["reason"] for p in tables["load_problems"])
