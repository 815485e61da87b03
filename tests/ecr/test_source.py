"""The ECR source against the emulator: exact data, incremental reruns, history, faults, errors."""

from __future__ import annotations

from collections import Counter

import pytest

from emulators.base import Faults
from emulators.inventory import Inventory
from pipelines.load import run_load
from sources.errors import AuthError, NotFoundError
from tests.ecr.conftest import ecr_registry
from tests.support import (
    current_tags,
    expected_children,
    expected_images,
    expected_layers,
    expected_tags,
    loaded_children,
    loaded_images,
    loaded_layers,
    new_pipeline,
    query,
    table_counts,
    tag_history,
)


def load(pipeline, **options):
    counter = Counter()
    summary = run_load(pipeline, ["ecr"], source_options={"ecr": {"request_counter": counter, **options}})
    return summary, counter


def assert_matches_inventory(pipeline, inventory):
    assert loaded_images(pipeline, "ecr") == expected_images(inventory, ecr_registry)
    assert loaded_layers(pipeline, "ecr") == expected_layers(inventory, ecr_registry)
    assert loaded_children(pipeline, "ecr") == expected_children(inventory, ecr_registry)
    assert current_tags(pipeline, "ecr") == expected_tags(inventory, ecr_registry)


def test_first_load_is_exact_at_acceptance_size(tmp_path, ecr_env):
    inventory = Inventory(seed=11, registries=("us-east-1", "eu-west-1"), repositories=50, images=5000)
    emulator = ecr_env(inventory)
    pipeline = new_pipeline(tmp_path)
    _, counter = load(pipeline)
    assert_matches_inventory(pipeline, inventory)
    # every digest exactly once per repository
    dupes = query(pipeline, "SELECT registry, repository, digest FROM images GROUP BY ALL HAVING count(*) > 1")
    assert dupes == []
    repos = query(pipeline, "SELECT registry, repository, image_count FROM repositories WHERE provider = 'ecr'")
    assert {(r, n): c for r, n, c in repos} == {
        (ecr_registry(repo.registry), repo.name): len(repo.images) for repo in inventory.repositories()
    }
    # all pages followed: more than one ListImages page per repository (5000 images / 50 repos * 2 tags)
    assert counter["ListImages"] == 50
    assert emulator.counters["DescribeImages"] == sum(-(-len(r.images) // 100) for r in inventory.repositories())


def test_paging_follows_every_page(tmp_path, ecr_env):
    """A repository with more than 1000 listing entries needs several ListImages pages."""
    inventory = Inventory(seed=3, registries=("us-east-1",), repositories=1, images=700, tags_per_image=2)
    emulator = ecr_env(inventory)
    pipeline = new_pipeline(tmp_path)
    load(pipeline)
    assert emulator.counters["ListImages"] == 2  # 1,300+ entries at 1000 a page
    assert_matches_inventory(pipeline, inventory)


def test_rerun_records_history_and_noop_makes_no_detail_calls(tmp_path, ecr_env):
    inventory = Inventory(seed=5, registries=("us-east-1", "eu-west-1"), repositories=10, images=300)
    emulator = ecr_env(inventory)
    pipeline = new_pipeline(tmp_path)
    load(pipeline)
    before = table_counts(pipeline)

    moves = inventory.move_tags(10)
    deletes = inventory.delete_tags(5)
    pushes = inventory.push_images(20)
    emulator.reset_counters()
    load(pipeline)
    assert_matches_inventory(pipeline, inventory)
    history = tag_history(pipeline, "ecr")
    for repo, tag, old, new in moves:
        key = (ecr_registry(repo.registry), repo.name, tag)
        if any(d[0] == repo and d[1] == tag for d in deletes):
            continue
        assert history[key] == [(old, False), (new, True)]
    for repo, tag, digest in deletes:
        rows = history[(ecr_registry(repo.registry), repo.name, tag)]
        assert rows[-1][1] is False and all(not is_open for _, is_open in rows)
    new_digests = {(repo.name, d) for repo, image in pushes for d in [image.digest] + [c.digest for c in image.children]}
    assert emulator.counters["DescribeImages"] >= 1
    described = query(pipeline, "SELECT count(*) FROM images")[0][0]
    assert described == before["images"] + len(new_digests)
    # unchanged tags keep exactly one open row
    moved_or_deleted = {(r.name, t) for r, t, *_ in moves} | {(r.name, t) for r, t, _ in deletes}
    for (registry, repository, tag), rows in history.items():
        if (repository, tag) not in moved_or_deleted and len(rows) == 1:
            assert rows == [(rows[0][0], True)]

    after = table_counts(pipeline)
    emulator.reset_counters()
    load(pipeline)
    assert emulator.counters["DescribeImages"] == 0
    assert emulator.counters["BatchGetImage"] == 0
    assert emulator.counters["ListImages"] > 0
    assert table_counts(pipeline) == after


def test_partial_run_leaves_other_repositories_history_alone(tmp_path, ecr_env):
    inventory = Inventory(seed=8, registries=("us-east-1",), repositories=4, images=60)
    ecr_env(inventory)
    pipeline = new_pipeline(tmp_path)
    load(pipeline)
    repos = sorted(inventory.repositories(), key=lambda r: r.name)
    target, other = repos[0], repos[1]
    # tags vanish everywhere, but the run reads only `target`
    for repo in (target, other):
        repo.tags.clear()
    load(pipeline, repositories=[target.name])
    open_rows = query(pipeline, "SELECT repository, count(*) FROM tags WHERE valid_to IS NULL GROUP BY ALL")
    open_by_repo = dict(open_rows)
    assert target.name not in open_by_repo
    assert open_by_repo[other.name] > 0
    # a full run then retires the other repository's tags too
    load(pipeline)
    assert query(pipeline, "SELECT count(*) FROM tags WHERE valid_to IS NULL AND repository = %s", other.name)[0][0] == 0


def test_faults_do_not_change_the_data(tmp_path, ecr_env):
    inventory = Inventory(seed=21, registries=("us-east-1", "eu-west-1"), repositories=8, images=200)
    emulator = ecr_env(inventory, Faults(throttle_every=5, error_every=11))
    pipeline = new_pipeline(tmp_path)
    load(pipeline, max_attempts=10)
    assert emulator.faults_injected["throttle"] > 0 and emulator.faults_injected["error"] > 0
    assert_matches_inventory(pipeline, inventory)


def test_tag_status_filter_loads_only_untagged_and_keeps_history(tmp_path, ecr_env):
    inventory = Inventory(seed=4, registries=("us-east-1",), repositories=3, images=40)
    ecr_env(inventory)
    pipeline = new_pipeline(tmp_path)
    load(pipeline)
    tags_before = current_tags(pipeline, "ecr")
    pipeline2 = new_pipeline(tmp_path / "untagged")
    load(pipeline2, tag_status="UNTAGGED")
    untagged = {(ecr_registry(r.registry), r.name, d) for r in inventory.repositories() for d in r.images if not r.tags_of(d)}
    assert set(loaded_images(pipeline2, "ecr")) == untagged
    # an UNTAGGED-only run on the first dataset retires no tag
    load(pipeline, tag_status="UNTAGGED")
    assert current_tags(pipeline, "ecr") == tags_before


def test_wrong_credentials_raise_auth_error_naming_registry_and_call(tmp_path, ecr_env, monkeypatch):
    ecr_env(Inventory(seed=1, registries=("us-east-1",), repositories=1, images=3))
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret-value-123")
    pipeline = new_pipeline(tmp_path)
    with pytest.raises(Exception) as info:
        load(pipeline)
    from pipelines.cli import _root_cause

    error = _root_cause(info.value)
    assert isinstance(error, AuthError)
    assert "DescribeRepositories" in str(error) and "us-east-1" in str(error)
    assert "wrong-secret-value-123" not in str(error)


def test_unknown_repository_raises_not_found(tmp_path, ecr_env):
    ecr_env(Inventory(seed=1, registries=("us-east-1",), repositories=1, images=3))
    pipeline = new_pipeline(tmp_path)
    with pytest.raises(Exception) as info:
        load(pipeline, repositories=["no/such-repo"])
    from pipelines.cli import _root_cause

    error = _root_cause(info.value)
    assert isinstance(error, NotFoundError)
    assert "no/such-repo" in str(error) and "DescribeRepositories" in str(error)


def test_ecr_fields_beyond_the_unified_model_are_kept(tmp_path, ecr_env):
    inventory = Inventory(seed=2, registries=("us-east-1",), repositories=3, images=30)
    ecr_env(inventory)
    pipeline = new_pipeline(tmp_path)
    load(pipeline)
    scanned = query(pipeline, "SELECT count(*) FROM images WHERE image_scan_findings_summary IS NOT NULL")[0][0]
    assert scanned > 0
    assert query(pipeline, "SELECT count(*) FROM images WHERE last_pulled_at IS NOT NULL")[0][0] > 0
    assert query(pipeline, "SELECT count(DISTINCT image_tag_mutability) FROM repositories")[0][0] >= 1
    assert query(pipeline, "SELECT count(*) FROM repositories WHERE encryption_type = 'AES256'")[0][0] == 3
    pulled = {
        (r.name, d): image.last_pulled_ns for r in inventory.repositories() for d, image in r.images.items()
    }
    rows = query(pipeline, "SELECT repository, digest, last_pulled_at FROM images")
    from tests.support import truncate_ms

    for repository, digest, last_pulled in rows:
        expected = pulled[(repository, digest)]
        assert last_pulled == (truncate_ms(expected) if expected else None)
