"""Unit tests of the OCI source's pieces: challenges, scopes, errors, paging, manifest mapping."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
import requests

from sources.errors import BadResponseError, ConfigError
from sources.manifests import DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST, parse_manifest
from sources.oci.helpers import (
    ConfigInfo,
    FetchedManifest,
    LinkPaginator,
    RegistryAuth,
    _names,
    describe_oci_error,
    map_manifest,
    normalise_registry_url,
    parse_challenge,
    read_config,
    registry_host,
    reference_path,
    repository_path,
    scope_for_url,
    sha256_digest,
)


def response(status=200, body=b"", headers=None, url="http://r.example/v2/_catalog?n=2"):
    r = requests.Response()
    r.status_code = status
    r._content = body if isinstance(body, bytes) else json.dumps(body).encode()
    r.headers.update(headers or {})
    r.url = url
    return r


def test_parse_challenge_bearer_with_commas_in_scope():
    scheme, params = parse_challenge(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/nginx:pull,push",error="invalid_token"'
    )
    assert scheme == "bearer"
    assert params == {
        "realm": "https://auth.docker.io/token",
        "service": "registry.docker.io",
        "scope": "repository:library/nginx:pull,push",
        "error": "invalid_token",
    }
    assert parse_challenge('Basic realm="basic-realm"') == ("basic", {"realm": "basic-realm"})
    assert parse_challenge(None) == (None, {})


@pytest.mark.parametrize(
    "url, scope",
    [
        ("https://r/v2/_catalog?n=100", "registry:catalog:*"),
        ("https://r/v2/team/app/tags/list", "repository:team/app:pull"),
        ("https://r/v2/a/b/c/manifests/sha256:abc", "repository:a/b/c:pull"),
        ("https://r/v2/app/blobs/sha256:abc", "repository:app:pull"),
        ("https://r/v2/", None),
    ],
)
def test_scope_for_url(url, scope):
    assert scope_for_url(url) == scope


def test_registry_url_and_host():
    assert normalise_registry_url("ghcr.io/") == "https://ghcr.io"
    assert registry_host("http://127.0.0.1:5000/") == "127.0.0.1:5000"
    assert registry_host("https://registry.example.com") == "registry.example.com"
    with pytest.raises(ConfigError):
        normalise_registry_url("")
    with pytest.raises(ConfigError):
        normalise_registry_url("ftp://x")
    assert repository_path("team/app with space") == "team/app%20with%20space"


def test_dot_components_of_a_name_are_not_resolved_away():
    # requests/urllib3 resolve `..` and `.` in a path: `a/../b/./c` would read repository `b/c`
    assert repository_path("a/../b/./c") == "a/%2E%2E/b/%2E/c"
    assert repository_path("a..b/.x") == "a..b/.x"  # only whole components
    assert reference_path("..") == "%2E%2E" and reference_path("a..b") == "a..b"
    url = f"http://r.example/v2/{repository_path('a/../b/./c')}/manifests/{reference_path('..')}"
    prepared = requests.Request("GET", url, auth=RegistryAuth()).prepare()
    assert prepared.path_url == "/v2/a/%2E%2E/b/%2E/c/manifests/%2E%2E"


def test_a_listing_page_without_its_list_stops_instead_of_reading_as_empty():
    assert _names({"tags": None}, "tags", "GET tags", "r") == []  # the CNCF registry's empty repository
    odd: list = []
    assert _names({"tags": ["a", 1, None, "", "b"]}, "tags", "GET tags", "r", odd) == ["a", "b"]
    assert odd == [1, None, ""]
    for body, words in (({"name": "x"}, "without `tags`"), ([1], "JSON list"), ({"tags": "latest"}, "not a list")):
        with pytest.raises(BadResponseError) as info:
            _names(body, "tags", "GET /v2/x/tags/list", "reg.example")
        assert words in str(info.value) and "reg.example" in str(info.value) and "GET /v2/x/tags/list" in str(info.value)


def test_describe_oci_error():
    body = {"errors": [{"code": "NAME_UNKNOWN", "message": "repository name not known to registry", "detail": {"name": "x"}}]}
    assert describe_oci_error(response(404, body)) == 'NAME_UNKNOWN: repository name not known to registry ({"name": "x"})'
    assert describe_oci_error(response(502, b"<html>bad gateway</html>")) == "<html>bad gateway</html>"


def test_link_paginator_follows_relative_links_and_refuses_a_repeat():
    paginator = LinkPaginator("GET /v2/_catalog")
    request = requests.Request("GET", "http://r.example/v2/_catalog", params={"n": 2})
    paginator.update_state(response(headers={"Link": '</v2/_catalog?last=b&n=2>; rel="next"'}))
    paginator.update_request(request)
    assert request.url == "http://r.example/v2/_catalog?last=b&n=2" and request.params is None
    paginator.update_state(response(headers={}))
    assert not paginator.has_next_page
    repeating = LinkPaginator("GET /v2/_catalog")
    repeating.update_state(response(headers={"Link": '</v2/_catalog?last=b&n=2>; rel="next"'}))
    with pytest.raises(BadResponseError):
        repeating.update_state(response(headers={"Link": '</v2/_catalog?last=b&n=2>; rel="next"'}))


def _fetched(doc, media_type):
    raw = json.dumps(doc).encode()
    return FetchedManifest(sha256_digest(raw), media_type, raw)


def test_map_oci_manifest_created_from_annotation_size_is_config_plus_layers():
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 10, "digest": "sha256:c"},
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "size": 100, "digest": "sha256:l1"},
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "size": "2000", "digest": "sha256:l2"},
        ],
        "annotations": {"org.opencontainers.image.created": "2026-01-02T03:04:05.123456789Z"},
    }
    fetched = _fetched(doc, OCI_MANIFEST)
    rows = map_manifest("r:5000", "team/app", fetched, parse_manifest(fetched.raw), ConfigInfo(os="linux", arch="arm64", variant="v8"))
    image = rows.image
    assert image["size_bytes"] == 2110
    assert image["created_at"] == datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=timezone.utc)
    assert (image["platform_os"], image["platform_arch"], image["platform_variant"]) == ("linux", "arm64", "v8")
    assert (image["layer_count"], image["child_count"], image["manifest_size_bytes"]) == (2, None, len(fetched.raw))
    assert [(l["position"], l["digest"], l["size_bytes"]) for l in rows.layers] == [(0, "sha256:l1", 100), (1, "sha256:l2", 2000)]
    assert rows.children == [] and rows.problems == []


def test_config_created_wins_over_the_annotation_and_bad_values_are_problems():
    problems = []
    info = read_config({"created": "2025-05-06T07:08:09Z", "os": "linux", "architecture": "amd64"}, problems)
    assert info.created_at == datetime(2025, 5, 6, 7, 8, 9, tzinfo=timezone.utc) and problems == []
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {"size": 1, "digest": "sha256:c"}, "layers": [],
           "annotations": {"org.opencontainers.image.created": "yesterday"}}
    fetched = _fetched(doc, OCI_MANIFEST)
    rows = map_manifest("r", "a", fetched, parse_manifest(fetched.raw), info)
    assert rows.image["created_at"] == info.created_at and rows.problems == []
    rows = map_manifest("r", "a", fetched, parse_manifest(fetched.raw), ConfigInfo())
    assert rows.image["created_at"] is None and "yesterday" in rows.problems[0]
    bad = []
    assert read_config({"created": 12.5e99}, bad).created_at is None and bad


@pytest.mark.parametrize("media_type", [OCI_INDEX, DOCKER_MANIFEST_LIST])
def test_map_index_children_with_platforms_and_no_size(media_type):
    doc = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "size": 500, "digest": "sha256:a", "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": OCI_MANIFEST, "size": 501, "digest": "sha256:b",
             "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
        ],
    }
    fetched = _fetched(doc, media_type)
    rows = map_manifest("r", "a", fetched, parse_manifest(fetched.raw), None)
    assert rows.image["size_bytes"] is None and rows.image["child_count"] == 2 and rows.image["layer_count"] is None
    assert [(c["position"], c["digest"], c["platform_arch"], c["platform_variant"], c["size_bytes"]) for c in rows.children] == [
        (0, "sha256:a", "amd64", None, 500),
        (1, "sha256:b", "arm64", "v8", 501),
    ]
    assert all(c["image_digest"] == fetched.digest for c in rows.children)


def test_child_platform_comes_from_the_index_entry():
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {"size": 1, "digest": "sha256:c"}, "layers": []}
    fetched = _fetched(doc, OCI_MANIFEST)
    rows = map_manifest("r", "a", fetched, parse_manifest(fetched.raw), ConfigInfo(os="linux", arch="amd64"), ("linux", "arm", "v7"))
    assert (rows.image["platform_arch"], rows.image["platform_variant"]) == ("arm", "v7")


def test_demo_without_the_registry_binary_raises_a_one_line_reason(monkeypatch):
    import emulators.oci.registry as registry_module
    from emulators.oci import RegistryUnavailable, start_demo

    monkeypatch.setattr(registry_module, "registry_binary", lambda: None)
    with pytest.raises(RegistryUnavailable) as error:
        start_demo()
    assert "docker-registry" in str(error.value) and "\n" not in str(error.value)


def test_throttled_to_the_end_is_an_error_not_an_empty_listing(monkeypatch):
    """429 on every attempt: the walk fails with the registry's error; it must never read the
    error body as an empty page (an empty catalog would retire every tag of the registry)."""
    from emulators.base import Faults
    from emulators.oci import CountingProxy
    from sources.errors import ApiError
    from sources.oci.helpers import OciClient

    monkeypatch.setenv("RUNTIME__REQUEST_BACKOFF_FACTOR", "0")
    monkeypatch.setenv("RUNTIME__REQUEST_MAX_ATTEMPTS", "3")
    always_throttled = CountingProxy("http://127.0.0.1:9", Faults(throttle_every=1)).start()
    try:
        client = OciClient(always_throttled.url)
        with pytest.raises(ApiError) as error:
            list(client.catalog(100))
        assert "TOOMANYREQUESTS" in str(error.value) and "GET /v2/_catalog" in str(error.value)
        with pytest.raises(ApiError):
            client.tags("team/app")
        assert always_throttled.counters["catalog"] == 3 and always_throttled.counters["tags"] == 3
    finally:
        always_throttled.stop()
