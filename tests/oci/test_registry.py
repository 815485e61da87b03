"""The OCI source against a REAL registry (Debian's docker-registry, CNCF distribution 2.8).

Images are pushed by the fixtures with plain HTTP uploads, derived from the generated inventory:
names with slashes, OCI indexes and Docker manifest lists (multi-arch), untagged manifests,
then a moved tag, a deleted manifest and a repository whose manifests are all deleted.
Expected values come from the pushed documents, never from literals.
"""

from __future__ import annotations

import json
import logging
from urllib.parse import urlsplit

import pytest

from emulators.base import Faults
from emulators.inventory import Inventory
from emulators.oci import Pusher, RegistryData
from sources.errors import AuthError, NotFoundError
from tests.oci.conftest import load_oci, pushed_registry
from tests.oci.expected import (
    assert_loaded_exactly,
    current_tags,
    expected_images,
    snapshot,
    tag_history,
)
from tests.support import new_pipeline, query, require_registry_binary, table_counts


def assert_loaded_exactly_but_tags(pipeline, data, first, registry):
    """Images as expected; the tag map is checked by the caller (a filtered run)."""
    from tests.oci.expected import loaded_images

    assert loaded_images(pipeline, registry) == {**first["images"], **expected_images(data)}


def load_error(pipeline, **options) -> BaseException:
    """The error a failing load reports (what the CLI prints)."""
    from pipelines.cli import _root_cause

    with pytest.raises(Exception) as info:
        load_oci(pipeline, **options)
    return _root_cause(info.value)


def host(url: str) -> str:
    return urlsplit(url).netloc


def single_images_with_tags(data, repository):
    repo = data.repositories[repository]
    return [d for d in sorted(set(repo.tags.values())) if not repo.images[d].is_index]


def test_acceptance_20_repositories_300_manifests_history_and_noop(tmp_path, start_registry, proxy_to):
    # one tag per image keeps the HEAD-per-tag runs quick; seed and size give exactly 300 manifests
    inventory = Inventory(seed=7, repositories=20, images=271, tags_per_image=1)
    registry, data, pusher = pushed_registry(start_registry, inventory)
    counts = data.counts()
    assert (counts["repositories"], counts["reachable"]) == (20, 300)  # the acceptance size
    assert counts["manifests"] > counts["reachable"]  # untagged manifests exist and stay invisible
    kinds = {image.media_type for image in data.expected_images().values()}
    assert {"application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"} <= kinds
    assert any("/" in name for name in data.repositories)

    proxy = proxy_to(registry.url)
    pipeline = new_pipeline(tmp_path)
    calls = load_oci(pipeline, registry_url=proxy.url)
    assert_loaded_exactly(pipeline, data, host(proxy.url))
    assert proxy.counters["get_manifest"] == 300  # each manifest fetched once
    configs = {img.config.digest for img in data.expected_images().values() if img.config}
    assert proxy.counters["get_blob"] == len(configs)  # each config blob once
    assert calls["get_manifest"] == 300
    # the index rows link their platform children, and each child is an images row of its own
    children = query(
        pipeline,
        "SELECT count(*), count(i.digest) FROM images__manifests m LEFT JOIN images i"
        " ON i.repository = m.repository AND i.digest = m.digest",
    )[0]
    assert children[0] == children[1] > 0
    repos = dict(query(pipeline, "SELECT repository, image_count FROM repositories WHERE provider = 'oci'"))
    assert repos == {name: len(set(r.tags.values())) for name, r in data.repositories.items()}

    # a no-op rerun: listing calls only (catalog, tags, HEAD per tag), no manifest or blob GETs
    before_counts = table_counts(pipeline)
    proxy.reset_counters()
    load_oci(pipeline, registry_url=proxy.url)
    assert proxy.counters["get_manifest"] == 0
    assert proxy.counters["get_blob"] == 0
    assert proxy.counters["head_manifest"] == counts["tags"]
    assert table_counts(pipeline) == before_counts
    first = snapshot(data)

    # users at work: tags moved, images pushed, a manifest deleted, a repository emptied
    moves = data.move_tags(pusher, 4)
    pushed = data.push_images(pusher, 5)
    victim_repo = next(name for name in sorted(data.repositories) if len(single_images_with_tags(data, name)) >= 2)
    victim = single_images_with_tags(data, victim_repo)[0]
    deleted_tags = [(victim_repo, tag, victim) for tag in data.delete_manifest(pusher, victim_repo, victim)]
    emptied = next(
        name for name in sorted(data.repositories, reverse=True)
        if name != victim_repo and data.repositories[name].tags and name not in {m[0] for m in moves}
    )
    for digest in sorted(set(data.repositories[emptied].tags.values())):
        deleted_tags += [(emptied, tag, digest) for tag in data.delete_manifest(pusher, emptied, digest)]
    assert moves and pushed and deleted_tags

    proxy.reset_counters()
    load_oci(pipeline, registry_url=proxy.url)
    new_digests = set(expected_images(data)) - set(first["images"])
    assert proxy.counters["get_manifest"] == len(new_digests)  # only what was never loaded
    assert_loaded_exactly(pipeline, data, host(proxy.url), earlier=[first])

    history = tag_history(pipeline)
    for repository, tag, old, new in moves:
        assert history[(repository, tag)] == [(old, False), (new, True)]
    for repository, tag, digest in deleted_tags:
        assert history[(repository, tag)] == [(digest, False)]
    changed = {(m[0], m[1]) for m in moves} | {(d[0], d[1]) for d in deleted_tags}
    for key, rows in history.items():
        if key not in changed:  # unchanged and newly pushed tags: one open row
            assert rows == [(data.expected_tags()[key], True)], key
    # the emptied repository stays in the catalog (a registry quirk) with no current tags
    assert emptied in dict(query(pipeline, "SELECT repository, image_count FROM repositories"))
    assert not [k for k in current_tags(pipeline, host(proxy.url)) if k[0] == emptied]


def test_catalog_pages_by_link_and_filtered_runs_keep_other_history(tmp_path, start_registry, proxy_to):
    inventory = Inventory(seed=3, repositories=5, images=30, multiarch_every=4)
    registry, data, pusher = pushed_registry(start_registry, inventory)
    proxy = proxy_to(registry.url, tags_page_size=3)  # tags/list paged by Link, as GHCR does
    pipeline = new_pipeline(tmp_path)
    load_oci(pipeline, registry_url=proxy.url, catalog_page_size=2)
    assert proxy.counters["catalog"] == 3  # 5 names, 2 a page, relative Link headers followed
    assert proxy.counters["tags"] == sum(max(1, -(-len(r.tags) // 3)) for r in data.repositories.values())
    assert_loaded_exactly(pipeline, data, host(proxy.url))
    first = snapshot(data)

    # a run filtered to one repository retires history only inside it
    names = sorted(data.repositories)
    inside, outside = names[0], names[1]
    for name in (inside, outside):
        digest = sorted(set(data.repositories[name].tags.values()))[0]
        data.delete_manifest(pusher, name, digest)
    load_oci(pipeline, registry_url=proxy.url, repositories=[inside])
    open_tags = current_tags(pipeline, host(proxy.url))
    assert {k: v for k, v in open_tags.items() if k[0] == inside} == {
        k: v for k, v in data.expected_tags().items() if k[0] == inside
    }
    still_open_outside = {k for k in open_tags if k[0] == outside}
    assert still_open_outside > {k for k in data.expected_tags() if k[0] == outside}  # not retired yet
    assert_loaded_exactly_but_tags(pipeline, data, first, host(proxy.url))

    error = load_error(pipeline, registry_url=proxy.url, repositories=["no/such-repository"])
    assert isinstance(error, NotFoundError)
    assert "no/such-repository" in str(error) and host(proxy.url) in str(error)


def cli(tmp_path, monkeypatch, capsys, env):
    """`registry-etl --debug load oci`, configured by the environment only; (exit code, output).

    Run in-process (`pipelines.cli.main`): a subprocess would spend seconds importing dlt."""
    from pipelines.cli import main

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    capsys.readouterr()
    try:
        code = main(["--debug", "load", "oci", "--quiet", "--duckdb", str(tmp_path / "cli.duckdb"),
                     "--pipelines-dir", str(tmp_path / "cli-pipelines")])
    finally:
        root.handlers[:], _ = saved[0], root.setLevel(saved[1])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_basic_auth_wrong_password_is_a_clear_error_right_one_loads(tmp_path, start_registry, monkeypatch, capsys, caplog):
    password = "Basic-Secret-4242"
    registry = start_registry(htpasswd={"reader": password})
    data = RegistryData(Inventory(seed=5, repositories=3, images=12))
    Pusher(registry.url, auth=("reader", password)).push_all(data)
    env = {"SOURCES__OCI__REGISTRY_URL": registry.url, "SOURCES__OCI__USERNAME": "reader"}

    code, out, err = cli(tmp_path, monkeypatch, capsys, {**env, "SOURCES__OCI__PASSWORD": "wrong-password-1"})
    assert code == 3, err  # the CLI's exit code for an auth error
    message = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(message) == 1
    assert host(registry.url) in message[0] and "GET /v2/_catalog" in message[0] and "HTTP 401" in message[0]
    assert "UNAUTHORIZED" in message[0] and "credentials" in message[0]

    assert isinstance(load_error(new_pipeline(tmp_path, "anonymous.duckdb"), registry_url=registry.url), AuthError)

    # the right password, configured the same way (in-process: a subprocess costs seconds here)
    for key, value in {**env, "SOURCES__OCI__PASSWORD": password}.items():
        monkeypatch.setenv(key, value)
    pipeline = new_pipeline(tmp_path)
    caplog.set_level(logging.DEBUG)
    load_oci(pipeline)
    assert_loaded_exactly(pipeline, data, host(registry.url))
    # the secrets never show: not in any output (debug logs included), not in the data
    import base64

    basic = base64.b64encode(f"reader:{password}".encode()).decode()
    for output in (out, err, caplog.text):
        assert password not in output and "wrong-password-1" not in output and basic not in output
    dump = json.dumps([query(pipeline, f"SELECT * FROM {t}") for t in ("images", "tags", "repositories")], default=str)
    assert password not in dump and "reader" not in dump
    # nor in dlt's local state and traces (resolved config values are kept there)
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.suffix not in (".duckdb", ".wal"):
            assert password.encode() not in path.read_bytes(), path


def test_throttling_errors_retried_rate_limits_reported_and_heads_without_digest(
    tmp_path, start_registry, proxy_to, caplog, monkeypatch
):
    # faults count all requests together and 8 calls overlap: leave room for unlucky streaks
    monkeypatch.setenv("RUNTIME__REQUEST_MAX_ATTEMPTS", "12")
    inventory = Inventory(seed=9, repositories=3, images=15)
    registry, data, _ = pushed_registry(start_registry, inventory)
    proxy = proxy_to(
        registry.url, Faults(throttle_every=4, error_every=7, retry_after_s=0), ratelimit=(100, 90), head_without_digest=True
    )
    pipeline = new_pipeline(tmp_path)
    caplog.set_level(logging.INFO, logger="registry_etl")
    load_oci(pipeline, registry_url=proxy.url)
    assert proxy.faults_injected["throttle"] > 0 and proxy.faults_injected["error"] > 0
    assert_loaded_exactly(pipeline, data, host(proxy.url))
    assert "ratelimit-limit=100;w=21600" in caplog.text
    assert "throttled" in caplog.text
    # without Docker-Content-Digest on HEAD the digest is the sha256 of the manifest (a GET per tag)
    assert proxy.counters["get_manifest"] >= len(data.expected_tags())


def test_demo_start_and_load_through_settings(tmp_path, monkeypatch):
    from emulators.oci import start_demo

    require_registry_binary()
    demo, env = start_demo()
    try:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        pipeline = new_pipeline(tmp_path)
        load_oci(pipeline)  # registry_url from SOURCES__OCI__REGISTRY_URL, as the CLI runs it
        assert_loaded_exactly(pipeline, demo.data, host(demo.url))
    finally:
        demo.stop()


def test_bearer_token_challenge_against_the_real_registry(tmp_path, start_registry):
    from emulators.oci.token import TokenServer
    from sources.oci.helpers import OciClient, RegistryAuth

    secret = "Token-Secret-9876"
    workdir = tmp_path / "token"
    workdir.mkdir()
    tokens = TokenServer(workdir, users={"robot": secret}).start()
    try:
        registry = start_registry(token_auth=tokens.registry_config())
        data = RegistryData(Inventory(seed=4, repositories=3, images=10))
        Pusher(registry.url, auth=RegistryAuth("robot", secret)).push_all(data)  # push scopes by challenge
        tokens.reset_counters()

        pipeline = new_pipeline(tmp_path)
        load_oci(pipeline, registry_url=registry.url, username="robot", password=secret)
        assert_loaded_exactly(pipeline, data, host(registry.url))
        # one token per scope, cached across tags, HEADs, manifests and blobs of a repository
        assert tokens.counters["token"] == 1 + len(data.repositories)
        granted = {(a["type"], a["name"], tuple(a["actions"])) for c in tokens.issued[-4:] for a in c["access"]}
        assert granted == {("registry", "catalog", ("*",))} | {
            ("repository", name, ("pull",)) for name in data.repositories
        }

        # a cached token the registry refuses is replaced; an expired one is not even sent
        client = OciClient(registry.url, "robot", secret)
        assert sorted(n for page in client.catalog(100) for n in page) == sorted(data.repositories)
        for token in client.auth._tokens.values():
            token.value = "not-a-valid-token"
        assert sorted(n for page in client.catalog(100) for n in page) == sorted(data.repositories)
        assert client.calls["token"] == 2
        for token in client.auth._tokens.values():
            token.expires_at = 0.0
        assert sorted(n for page in client.catalog(100) for n in page) == sorted(data.repositories)
        assert client.calls["token"] == 3

        error = load_error(pipeline, registry_url=registry.url, username="robot", password="wrong-token-pw")
        assert isinstance(error, AuthError)
        assert "token endpoint" in str(error) and "robot" in str(error) and "wrong-token-pw" not in str(error)
        assert isinstance(load_error(pipeline, registry_url=registry.url), AuthError)  # anonymous refused
    finally:
        tokens.stop()
