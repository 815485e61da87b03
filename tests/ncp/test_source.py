"""The NCP source against the emulator: exact data, paging, regions, incremental tag reads,
history, faults, errors and secrets."""

from __future__ import annotations

import math
import os
from collections import Counter

import pytest

from emulators.base import Faults
from emulators.inventory import Inventory
from pipelines.cli import _root_cause
from sources.errors import ApiError, AuthError, ConfigError, NotFoundError
from tests.ncp.conftest import (
    endpoint,
    expected_children,
    expected_images,
    expected_repositories,
    expected_tags,
    load,
    visible,
)
from tests.support import count_json_parses, current_tags, new_pipeline, query, table_counts, tag_history, truncate_ms


def loaded_images(pipeline):
    rows = query(
        pipeline,
        "SELECT registry, repository, digest, size_bytes, created_at, last_pulled_at, media_type, platform_os,"
        " platform_arch, platform_variant, child_count FROM images WHERE provider = 'ncp'",
    )
    return {tuple(r[:3]): tuple(r[3:]) for r in rows}


def loaded_children(pipeline):
    rows = query(
        pipeline,
        "SELECT registry, repository, image_digest, position, digest, media_type, platform_os, platform_arch,"
        " platform_variant, size_bytes FROM images__manifests WHERE provider = 'ncp'"
        " ORDER BY registry, repository, image_digest, position",
    )
    out = {}
    for registry, repository, index, position, *child in rows:
        children = out.setdefault((registry, repository, index), [])
        assert position == len(children)
        children.append(tuple(child))
    return out


def loaded_repositories(pipeline):
    rows = query(pipeline, "SELECT registry, repository, pull_count, description FROM repositories WHERE provider = 'ncp'")
    return {(r[0], r[1]): (r[2], r[3]) for r in rows}


def assert_matches_inventory(pipeline, inventory, region="kr"):
    assert loaded_repositories(pipeline) == expected_repositories(inventory, region)
    assert loaded_images(pipeline) == expected_images(inventory, region)
    assert loaded_children(pipeline) == expected_children(inventory, region)
    assert current_tags(pipeline, "ncp") == expected_tags(inventory, region)


def acceptance_inventory() -> Inventory:
    """2 registries, 40 NCP images (our repositories), 400 tags, some multi-arch."""
    images = 200
    while True:
        inventory = Inventory(seed=17, registries=("team-apps", "team-infra"), repositories=40, images=images)
        if inventory.counts()["tags"] >= 400:
            return inventory
        images += 1


def test_acceptance_size_is_exact(tmp_path, ncp_env):
    inventory = acceptance_inventory()
    assert inventory.counts()["tags"] == 400
    assert any(image.is_index for repo in inventory.repositories() for image in visible(repo).values())
    emulator = ncp_env(inventory)
    pipeline = new_pipeline(tmp_path)
    _, counter = load(pipeline)
    assert_matches_inventory(pipeline, inventory)
    # repositories' updated_at is the image's last_updated (epoch ms)
    updated = dict(((r, n), u) for r, n, u in query(pipeline, "SELECT registry, repository, updated_at FROM repositories"))
    assert updated == {(endpoint(repo.registry), repo.name): truncate_ms(repo.updated_ns) for repo in inventory.repositories()}
    counts = table_counts(pipeline)
    assert counts["repositories"] == 40 and counts["tags"] == 400
    assert counts["images"] == len(expected_images(inventory))
    assert counts["images__manifests"] == sum(len(c) for c in expected_children(inventory).values()) > 0
    assert query(pipeline, "SELECT registry, registry_name, region, status FROM ncp_registries ORDER BY 1") == [
        (endpoint("team-apps"), "team-apps", "kr", "RUNNING"),
        (endpoint("team-infra"), "team-infra", "kr", "RUNNING"),
    ]
    assert query(pipeline, "SELECT count(*) FROM ncp_tags")[0][0] == 400
    # one listing of registries, one page of images per registry, one tag page per image
    assert dict(emulator.counters) == {"ListRegistries": 1, "ListImages": 2, "ListTags": 40}
    assert counter == Counter({"ListRegistries": 1, "ListImages": 2, "ListTags": 40})
    # the secret reaches neither the destination nor dlt's local state
    secret = emulator.credentials[next(iter(emulator.credentials))].encode()
    for root, _, files in os.walk(tmp_path):
        for name in files:
            with open(os.path.join(root, name), "rb") as handle:
                assert secret not in handle.read(), name


def test_paging_reads_every_page_and_not_one_past_the_end(tmp_path, ncp_env, monkeypatch):
    inventory = Inventory(seed=5, registries=("reg-a", "reg-b", "reg-c"), repositories=8, images=70)
    emulator = ncp_env(inventory)
    pipeline = new_pipeline(tmp_path)
    parses = count_json_parses(monkeypatch)
    _, counter = load(pipeline, page_size=2)
    assert_matches_inventory(pipeline, inventory)
    # every answer parsed once: its `results` and the paginator's `next` come from one parse
    assert len(parses) == sum(counter.values()) == sum(emulator.counters.values())
    pages = lambda n: max(1, math.ceil(n / 2))  # an empty listing is still one page
    assert emulator.counters["ListRegistries"] == 2
    assert emulator.counters["ListImages"] == sum(pages(len(repos)) for repos in inventory.registries.values())
    assert emulator.counters["ListTags"] == sum(pages(len(repo.tags)) for repo in inventory.repositories())
    assert emulator.counters["ListTags"] > len(list(inventory.repositories()))  # some tag lists span pages


def test_regions_use_their_paths_and_endpoints(tmp_path, ncp_env):
    inventory = Inventory(seed=6, registries=("seoul-reg", "sg-reg"), repositories=4, images=30)
    emulator = ncp_env(inventory, region="sgn", regions={"kr": ["seoul-reg"], "sgn": ["sg-reg"], "jpn": []})
    pipeline = new_pipeline(tmp_path)
    load(pipeline)
    sg_only = Inventory(seed=6, registries=("seoul-reg", "sg-reg"), repositories=4, images=30)
    del sg_only.registries["seoul-reg"]
    assert current_tags(pipeline, "ncp") == expected_tags(sg_only, "sgn")
    assert {r[0] for r in query(pipeline, "SELECT registry FROM repositories")} == {"sg-reg.sg.ncr.ntruss.com"}
    assert emulator.rejected == Counter()

    # a configured registry list skips the registry listing
    emulator.reset_counters()
    seoul = new_pipeline(tmp_path / "kr")
    load(seoul, region="kr", registries=["seoul-reg"])
    assert emulator.counters["ListRegistries"] == 0
    assert {r[0] for r in query(seoul, "SELECT registry FROM repositories")} == {"seoul-reg.kr.ncr.ntruss.com"}
    seoul_only = Inventory(seed=6, registries=("seoul-reg", "sg-reg"), repositories=4, images=30)
    del seoul_only.registries["sg-reg"]
    assert current_tags(seoul, "ncp") == expected_tags(seoul_only, "kr")

    with pytest.raises(Exception) as info:
        load(new_pipeline(tmp_path / "bad"), region="us")
    assert isinstance(_root_cause(info.value), ConfigError)


def _change_three_repositories(inventory):
    """Move one tag in each of three repositories and delete one more tag in the first."""
    repos = sorted(
        (r for r in inventory.repositories() if len({d for d in r.tags.values()}) > 1),
        key=lambda r: (r.registry, r.name),
    )[:3]
    moves = []
    for repo in repos:
        tag = sorted(repo.tags)[0]
        old = repo.tags[tag]
        new = sorted(d for d in set(repo.tags.values()) if d != old)[0]
        repo.tags[tag] = new
        moves.append((repo, tag, old, new))
    deleted_tag = sorted(repos[0].tags)[-1]
    deleted = (repos[0], deleted_tag, repos[0].tags.pop(deleted_tag))
    return repos, moves, deleted


def test_rerun_reads_tags_of_changed_images_only_and_records_history(tmp_path, ncp_env):
    inventory = Inventory(seed=8, registries=("reg-a", "reg-b"), repositories=10, images=120)
    emulator = ncp_env(inventory)
    pipeline = new_pipeline(tmp_path)
    load(pipeline)
    first_rows = {
        (r[0], r[1], r[2]): r[3]
        for r in query(pipeline, "SELECT registry, repository, tag, valid_from FROM tags")
    }

    repos, moves, (deleted_repo, deleted_tag, deleted_digest) = _change_three_repositories(inventory)
    emulator.reset_counters()
    load(pipeline)
    assert set(emulator.tag_requests) == {(repo.registry, repo.name) for repo in repos}
    assert all(calls == 1 for calls in emulator.tag_requests.values())
    assert emulator.counters["ListTags"] == 3
    # the changed repositories' manifests were all loaded before: no image or link row again
    # (an append-only destination would hold them twice, docs/destinations.md)
    rows = pipeline.last_trace.last_normalize_info.row_counts
    assert rows.get("images", 0) == rows.get("images__manifests", 0) == 0, rows
    assert current_tags(pipeline, "ncp") == expected_tags(inventory)
    history = tag_history(pipeline, "ncp")
    for repo, tag, old, new in moves:
        assert history[(endpoint(repo.registry), repo.name, tag)] == [(old, False), (new, True)]
    assert history[(endpoint(deleted_repo.registry), deleted_repo.name, deleted_tag)] == [(deleted_digest, False)]
    # tags of the other images were not touched: one row each, still open, same valid_from
    changed = {(endpoint(r.registry), r.name) for r in repos}
    rows_now = {}
    for registry, repository, tag, valid_from in query(pipeline, "SELECT registry, repository, tag, valid_from FROM tags"):
        rows_now.setdefault((registry, repository, tag), []).append(valid_from)
    untouched = [key for key in first_rows if key[:2] not in changed]
    assert len(untouched) > 50
    for key in untouched:
        assert history[key] == [(expected_tags(inventory)[key], True)]
        assert rows_now[key] == [first_rows[key]]
    assert loaded_repositories(pipeline) == expected_repositories(inventory)

    # nothing changed: no tag calls, no new rows
    before = table_counts(pipeline, ("repositories", "images", "images__manifests", "tags", "ncp_tags", "ncp_images"))
    emulator.reset_counters()
    load(pipeline)
    assert emulator.counters["ListTags"] == 0 and emulator.tag_requests == Counter()
    assert emulator.counters["ListImages"] == 2
    assert table_counts(pipeline, ("repositories", "images", "images__manifests", "tags", "ncp_tags", "ncp_images")) == before

    # the source's full_refresh reads every image's tags again, and unchanged tags add no rows
    emulator.reset_counters()
    load(pipeline, source_full_refresh=True)
    assert emulator.counters["ListTags"] == 10
    assert table_counts(pipeline, ("repositories", "images", "images__manifests", "tags", "ncp_tags", "ncp_images")) == before
    # `--full-refresh` (dlt drops the source's tables and state) loads everything anew
    emulator.reset_counters()
    load(pipeline, full_refresh=True)
    assert emulator.counters["ListTags"] == 10
    assert_matches_inventory(pipeline, inventory)
    assert query(pipeline, "SELECT count(*) FROM tags WHERE valid_to IS NOT NULL")[0][0] == 0


def test_new_images_vanished_repositories_and_registries(tmp_path, ncp_env):
    inventory = Inventory(seed=9, registries=("reg-a", "reg-b"), repositories=6, images=60)
    emulator = ncp_env(inventory)
    pipeline = new_pipeline(tmp_path)
    load(pipeline)
    gone = sorted(inventory.registries["reg-a"])[-1]
    gone_tags = dict(inventory.registries["reg-a"].pop(gone).tags)
    gone_registry = inventory.registries.pop("reg-b")
    before = {(repo.name, digest) for repo in inventory.repositories() for digest in visible(repo)}
    pushed = inventory.push_images(2)
    emulator.reset_counters()
    load(pipeline)
    # only the pushed manifests (and their children) are new rows: each digest once
    new = {(repo.name, digest) for repo in inventory.repositories() for digest in visible(repo)} - before
    rows = pipeline.last_trace.last_normalize_info.row_counts
    assert new and rows.get("images", 0) == len(new), rows
    assert set(emulator.tag_requests) == {("reg-a", repo.name) for repo, _ in pushed}
    assert current_tags(pipeline, "ncp") == expected_tags(inventory)
    history = tag_history(pipeline, "ncp")
    for tag, digest in gone_tags.items():
        assert history[(endpoint("reg-a"), gone, tag)] == [(digest, False)]
    closed = query(pipeline, "SELECT count(*) FROM tags WHERE registry = %s AND valid_to IS NOT NULL", endpoint("reg-b"))
    assert closed[0][0] == sum(len(repo.tags) for repo in gone_registry.values()) > 0
    images = loaded_images(pipeline)
    for key, value in expected_images(inventory).items():
        assert images[key] == value


def test_a_registry_failing_past_the_retries_is_an_api_error_not_missing_data(tmp_path, ncp_env, monkeypatch):
    monkeypatch.setenv("RUNTIME__REQUEST_MAX_ATTEMPTS", "3")
    emulator = ncp_env(Inventory(seed=1, registries=("reg-a",), repositories=2, images=5), Faults(error_every=1))
    with pytest.raises(Exception) as info:
        load(new_pipeline(tmp_path))
    error = _root_cause(info.value)
    assert isinstance(error, ApiError) and error.status == 503
    assert "ListRegistries" in str(error) and "Service Unavailable" in str(error)
    assert emulator.counters["ListRegistries"] == 3  # every attempt, then the error


def test_wrong_secret_is_an_auth_error_naming_registry_and_call(tmp_path, ncp_env, monkeypatch):
    emulator = ncp_env(Inventory(seed=1, registries=("reg-a",), repositories=2, images=5))
    monkeypatch.setenv("SOURCES__NCP__SECRET_KEY", "wrong-ncp-secret-424242")
    with pytest.raises(Exception) as info:
        load(new_pipeline(tmp_path), registries=["reg-a"])
    error = _root_cause(info.value)
    assert isinstance(error, AuthError)
    text = str(error)
    assert "reg-a" in text and "ListImages" in text and "/repositories/reg-a" in text
    assert "secret_key" in text and "clock" in text  # what to check
    assert "Authentication Failed" in text
    assert "wrong-ncp-secret-424242" not in text and "wrong-ncp-secret-424242" not in repr(info.value)
    assert emulator.rejected["signature"] == 1  # 401 is not retried


def test_clock_skew_is_refused(tmp_path, ncp_env):
    import time

    emulator = ncp_env(Inventory(seed=1, registries=("reg-a",), repositories=2, images=5), clock=lambda: time.time() + 600)
    with pytest.raises(Exception) as info:
        load(new_pipeline(tmp_path))
    error = _root_cause(info.value)
    assert isinstance(error, AuthError) and "ListRegistries" in str(error) and "Timestamp" in str(error)
    assert emulator.rejected["timestamp"] == 1


def test_unknown_registry_is_not_found(tmp_path, ncp_env):
    ncp_env(Inventory(seed=1, registries=("reg-a",), repositories=2, images=5))
    with pytest.raises(Exception) as info:
        load(new_pipeline(tmp_path), registries=["no-such-registry"])
    error = _root_cause(info.value)
    assert isinstance(error, NotFoundError)
    assert "no-such-registry" in str(error) and "ListImages" in str(error)


def test_changed_rerun_emits_new_images_only_and_retires_moved_tags_across_batches(tmp_path, ncp_env, monkeypatch):
    """The benchmark's changed rerun in small: tags moved in most repositories and images pushed.
    Rows leave in several batches (a small EMIT_ROWS), each repository's scope marker with them."""
    import sources.ncp as ncp_module

    monkeypatch.setattr(ncp_module, "EMIT_ROWS", 40)
    inventory = Inventory(seed=21, registries=("reg-a", "reg-b"), repositories=12, images=150)
    emulator = ncp_env(inventory)
    pipeline = new_pipeline(tmp_path)
    load(pipeline)
    assert_matches_inventory(pipeline, inventory)
    loaded_before = set(loaded_images(pipeline))

    moves = inventory.move_tags(8)
    pushed = inventory.push_images(3)
    changed = {(repo.registry, repo.name) for repo, *_ in moves} | {(repo.registry, repo.name) for repo, _ in pushed}
    untouched = [repo for repo in inventory.repositories() if (repo.registry, repo.name) not in changed]
    assert untouched, "the test needs a repository that did not change"
    emulator.reset_counters()
    load(pipeline)

    assert set(emulator.tag_requests) == changed
    # only digests the destination did not hold were emitted, and they all landed
    rows = pipeline.last_trace.last_normalize_info.row_counts
    new = set(expected_images(inventory)) - loaded_before
    assert new and rows.get("images", 0) == len(new), rows
    assert_matches_inventory(pipeline, inventory)
    history = tag_history(pipeline, "ncp")
    for repo, tag, old, new_digest in moves:
        assert history[(endpoint(repo.registry), repo.name, tag)] == [(old, False), (new_digest, True)]
    # the tags of repositories that did not change keep their one open row
    for repo in untouched:
        for tag, digest in repo.tags.items():
            assert history[(endpoint(repo.registry), repo.name, tag)] == [(digest, True)]
    # the tags of the changed repositories were re-read, but unchanged ones got no new row
    total = query(pipeline, "SELECT count(*) FROM tags WHERE provider = 'ncp'")[0][0]
    assert total == len(expected_tags(inventory)) + len(moves)
