"""The Yandex source against the emulator: exact data, paging, auth modes, token renewal,
history, partial runs, faults and errors."""

from __future__ import annotations

import contextlib
import json
import logging
import os

import pytest

from emulators.base import Faults
from emulators.inventory import Inventory
from emulators.yandex import YandexEmulator
from sources.errors import AuthError, NotFoundError
from tests.support import (
    count_json_parses,
    current_tags,
    expected_tags,
    new_pipeline,
    query,
    table_counts,
    tag_history,
    truncate_us,
)
from tests.yandex.conftest import IAM_TOKEN, OAUTH_TOKEN, authorized_key_pair, inventory, load, registry_of


# ---- expected values, computed from the inventory
def expected_images(inv: Inventory):
    """(registry, repository, digest) -> (size_bytes, created_at, config_digest, config_size, layer_count)."""
    out = {}
    for repo in inv.repositories():
        for digest, image in repo.images.items():
            config = image.config
            out[(registry_of(repo.registry), repo.name, digest)] = (
                YandexEmulator.compressed_size(image),
                truncate_us(image.created_ns),
                config.digest if config else None,
                config.size if config else None,
                len(image.layers),
            )
    return out


def loaded_images(pipeline):
    rows = query(
        pipeline,
        "SELECT registry, repository, digest, size_bytes, created_at, config_digest, config_size_bytes, layer_count"
        " FROM images WHERE provider = 'yandex'",
    )
    return {(r[0], r[1], r[2]): tuple(r[3:]) for r in rows}


def expected_layers(inv: Inventory):
    return {
        (registry_of(repo.registry), repo.name, digest): [(l.digest, l.size) for l in image.layers]
        for repo in inv.repositories()
        for digest, image in repo.images.items()
        if image.layers
    }


def loaded_layers(pipeline):
    rows = query(
        pipeline,
        "SELECT registry, repository, image_digest, position, digest, size_bytes FROM images__layers"
        " WHERE provider = 'yandex' ORDER BY registry, repository, image_digest, position",
    )
    out = {}
    for registry, repository, image_digest, position, digest, size in rows:
        layers = out.setdefault((registry, repository, image_digest), [])
        assert position == len(layers)
        layers.append((digest, size))
    return out


def expected_repositories(inv: Inventory):
    out = {}
    for repo in inv.repositories():
        blobs = {}
        for image in repo.images.values():
            for blob in ([image.config] if image.config else []) + image.layers:
                blobs[blob.digest] = blob.size
        newest = max((image.created_ns for image in repo.images.values()), default=None)
        out[(registry_of(repo.registry), repo.name)] = (
            len(repo.images),
            sum(blobs.values()),
            truncate_us(newest) if newest else None,
        )
    return out


def loaded_repositories(pipeline):
    rows = query(pipeline, "SELECT registry, repository, image_count, size_bytes, updated_at FROM repositories WHERE provider = 'yandex'")
    return {(r[0], r[1]): tuple(r[2:]) for r in rows}


def assert_matches_inventory(pipeline, inv: Inventory):
    assert loaded_images(pipeline) == expected_images(inv)
    assert loaded_layers(pipeline) == expected_layers(inv)
    assert current_tags(pipeline, "yandex") == expected_tags(inv, registry_of)
    assert loaded_repositories(pipeline) == expected_repositories(inv)


def root_cause(exc):
    from pipelines.cli import _root_cause

    return _root_cause(exc)


# ---- tests
def test_acceptance_size_is_exact(tmp_path, yandex_env):
    """3 registries in 2 folders, 30 repositories, 3,000 pushes (index children included)."""
    inv = inventory(registries=3, repositories=30, images=3000, seed=11)
    emulator = yandex_env(inv, folders=2)
    pipeline = new_pipeline(tmp_path)
    _, counter = load(pipeline)
    assert_matches_inventory(pipeline, inv)
    dupes = query(pipeline, "SELECT registry, repository, digest FROM images GROUP BY ALL HAVING count(*) > 1")
    assert dupes == []
    assert query(pipeline, "SELECT count(*) FROM images")[0][0] == inv.counts()["images"]
    # createdAt keeps the microseconds and invents nothing
    assert query(pipeline, "SELECT count(*) FROM images WHERE microsecond(created_at) % 1000 <> 0")[0][0] > 0
    # the registry rows keep status and labels
    regs = query(pipeline, "SELECT registry_id, registry, folder_id, status, labels FROM yandex_registries ORDER BY registry_id")
    assert [r[0] for r in regs] == sorted(inv.registries)
    for registry_id, registry, folder, status, labels in regs:
        info = emulator.registries[registry_id]
        assert (registry, folder, status, json.loads(labels)) == (registry_of(registry_id), info.folder_id, "ACTIVE", info.labels)
    # every page of every registry, at 1000 a page; Registry.list once per folder
    images_per_registry = [sum(len(r.images) for r in repos.values()) for repos in inv.registries.values()]
    assert emulator.counters["Image.list"] == sum(-(-n // 1000) for n in images_per_registry)
    assert emulator.counters["Registry.list"] == 2
    assert counter["Image.list"] == emulator.counters["Image.list"]
    # yandex_images holds the API's own ids for each digest
    assert query(pipeline, "SELECT count(*) FROM yandex_images WHERE image_id LIKE 'crp%'")[0][0] == inv.counts()["images"]


def test_paging_with_small_pages(tmp_path, yandex_env, monkeypatch):
    inv = inventory(registries=1, repositories=3, images=25, seed=3)
    emulator = yandex_env(inv)
    pipeline = new_pipeline(tmp_path)
    parses = count_json_parses(monkeypatch)
    _, counter = load(pipeline, page_size=4)
    # every answer parsed once: its records and the paginator's `nextPageToken` come from one parse
    assert len(parses) == sum(counter.values())
    total = inv.counts()["images"]
    assert emulator.counters["Image.list"] == -(-total // 4)
    assert emulator.counters["Repository.list"] == 1
    assert_matches_inventory(pipeline, inv)


@pytest.mark.parametrize("auth", ["key", "key_file", "iam", "oauth"])
def test_every_auth_mode_loads(tmp_path, yandex_env, auth, caplog):
    inv = inventory(registries=2, repositories=4, images=20, seed=4)
    emulator = yandex_env(inv, auth=auth)
    pipeline = new_pipeline(tmp_path)
    caplog.set_level(logging.DEBUG)
    with pytest.warns(DeprecationWarning) if auth == "oauth" else contextlib.nullcontext():
        load(pipeline)
    assert_matches_inventory(pipeline, inv)
    expected_exchanges = {"key": {"jwt": 1, "oauth": 0}, "key_file": {"jwt": 1, "oauth": 0}, "iam": {"jwt": 0, "oauth": 0}, "oauth": {"jwt": 0, "oauth": 1}}
    assert emulator.token_exchanges == expected_exchanges[auth]
    # no credential in the logs or the destination
    key = json.loads(authorized_key_pair()[0])
    secrets = [IAM_TOKEN, OAUTH_TOKEN, key["private_key"].splitlines()[1]] + list(emulator._tokens)
    assert_no_secret(pipeline, caplog.text, secrets)


def assert_no_secret(pipeline, log_text, secrets):
    dump = []
    for (table,) in query(pipeline, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'registry'"):
        dump.append(str(query(pipeline, f"SELECT * FROM {table}")))
    text = "\n".join(dump) + log_text
    for root, _, files in os.walk(pipeline.working_dir):
        for name in files:
            with open(os.path.join(root, name), "rb") as handle:
                text += handle.read().decode("utf-8", "replace")
    for secret in secrets:
        assert secret not in text


def test_token_expiring_mid_run_is_renewed_and_the_load_completes(tmp_path, yandex_env):
    inv = inventory(registries=2, repositories=4, images=40, seed=5)
    emulator = yandex_env(inv, auth="key")
    emulator.expire_tokens_after_calls = 4  # the 5th API call finds every token expired
    pipeline = new_pipeline(tmp_path)
    load(pipeline, page_size=5, concurrency=1)
    assert emulator.token_exchanges["jwt"] == 2
    assert_matches_inventory(pipeline, inv)


def test_short_lived_tokens_are_renewed_before_they_expire(tmp_path, yandex_env, monkeypatch):
    """Time runs 10 minutes per API call (for the emulator and the source alike); tokens live
    30 minutes: the source renews them on its own, so no call is ever refused."""
    import time as real_time

    from sources.yandex import auth as auth_module

    class Clock:
        offset = 0.0

        def __call__(self):
            return real_time.time() + self.offset

    clock = Clock()
    inv = inventory(registries=1, repositories=2, images=12, seed=6)
    emulator = yandex_env(inv, auth="key", token_lifetime_s=1800, clock=clock)
    monkeypatch.setattr(auth_module, "_now", clock)
    refused = []
    handle = emulator.handle

    def handle_and_age(request, operation):
        response = handle(request, operation)
        if response.status == 401:
            refused.append(operation)
        if operation != "IamToken.create":
            clock.offset += 600
        return response

    emulator.handle = handle_and_age
    load(pipeline := new_pipeline(tmp_path), page_size=3, concurrency=1)
    calls = sum(n for op, n in emulator.counters.items() if op != "IamToken.create")
    assert refused == []
    # renewed after 24 of its 30 minutes, i.e. every 3 calls
    assert emulator.token_exchanges["jwt"] == -(-calls // 3)
    assert_matches_inventory(pipeline, inv)


def test_wrong_token_raises_auth_error_naming_folder_and_call(tmp_path, yandex_env, monkeypatch):
    inv = inventory(registries=1, repositories=2, images=6, seed=7)
    yandex_env(inv, auth="iam")
    monkeypatch.setenv("SOURCES__YANDEX__IAM_TOKEN", "t1.wrong-token-value-987654321")
    pipeline = new_pipeline(tmp_path)
    with pytest.raises(Exception) as info:
        load(pipeline)
    error = root_cause(info.value)
    assert isinstance(error, AuthError)
    folder = json.loads(os.environ["SOURCES__YANDEX__FOLDER_ID"])[0]
    assert "Registry.list" in str(error) and folder in str(error) and "UNAUTHENTICATED" in str(error)
    assert "wrong-token-value" not in str(error)


def test_expired_token_raises_auth_error_naming_registry_and_call(tmp_path, yandex_env):
    inv = inventory(registries=1, repositories=2, images=6, seed=7)
    emulator = yandex_env(inv, auth="iam")
    emulator.expire_tokens_after_calls = 2  # Registry.list and Repository.list pass, Image.list does not
    pipeline = new_pipeline(tmp_path)
    with pytest.raises(Exception) as info:
        load(pipeline)
    error = root_cause(info.value)
    assert isinstance(error, AuthError)
    registry = registry_of(next(iter(inv.registries)))
    assert "Image.list" in str(error) and registry in str(error) and "expired" in str(error)
    assert IAM_TOKEN not in str(error)


def test_permission_denied_on_one_registry_names_it(tmp_path, yandex_env):
    inv = inventory(registries=2, repositories=2, images=6, seed=7)
    emulator = yandex_env(inv)
    denied = sorted(inv.registries)[1]
    emulator.denied_registries.add(denied)
    pipeline = new_pipeline(tmp_path)
    with pytest.raises(Exception) as info:
        load(pipeline)
    error = root_cause(info.value)
    assert isinstance(error, AuthError) and error.status == 403
    assert registry_of(denied) in str(error) and "PERMISSION_DENIED" in str(error)


def test_wrong_key_signature_is_refused_by_the_iam_endpoint(tmp_path, yandex_env, monkeypatch):
    from emulators.yandex import make_authorized_key

    inv = inventory(registries=1, repositories=1, images=3, seed=7)
    yandex_env(inv, auth="key")
    real = json.loads(authorized_key_pair()[0])
    other, _ = make_authorized_key(key_id=real["id"], service_account_id=real["service_account_id"])
    monkeypatch.setenv("SOURCES__YANDEX__SERVICE_ACCOUNT_KEY", json.dumps(other))
    pipeline = new_pipeline(tmp_path)
    with pytest.raises(Exception) as info:
        load(pipeline)
    error = root_cause(info.value)
    assert isinstance(error, AuthError)
    assert "signature is invalid" in str(error) and real["id"] in str(error)
    assert other["private_key"].splitlines()[1] not in str(error)


def test_moved_and_deleted_tags_make_history_and_noop_rerun_adds_nothing(tmp_path, yandex_env):
    inv = inventory(registries=2, repositories=6, images=70, seed=8)
    emulator = yandex_env(inv)
    pipeline = new_pipeline(tmp_path)
    load(pipeline)
    before = table_counts(pipeline)

    moves = inv.move_tags(6)
    deletes = inv.delete_tags(4)
    pushes = inv.push_images(6)
    load(pipeline)
    assert_matches_inventory(pipeline, inv)
    history = tag_history(pipeline, "yandex")
    deleted = {(r.name, t) for r, t, _ in deletes}
    for repo, tag, old, new in moves:
        if (repo.name, tag) in deleted:
            continue
        assert history[(registry_of(repo.registry), repo.name, tag)] == [(old, False), (new, True)]
    for repo, tag, digest in deletes:
        rows = history[(registry_of(repo.registry), repo.name, tag)]
        assert not any(is_open for _, is_open in rows)
    new_digests = {(repo.name, d) for repo, image in pushes for d in [image.digest] + [c.digest for c in image.children]}
    assert query(pipeline, "SELECT count(*) FROM images")[0][0] == before["images"] + len(new_digests)

    after = table_counts(pipeline) | {"yandex_images": query(pipeline, "SELECT count(*) FROM yandex_images")[0][0]}
    emulator.reset_counters()
    summary, _ = load(pipeline)
    assert table_counts(pipeline) | {"yandex_images": query(pipeline, "SELECT count(*) FROM yandex_images")[0][0]} == after
    # a no-op rerun re-emits no image: only listings, tags and the registry/repository rows
    assert "images" not in summary.rows and "images__layers" not in summary.rows
    assert set(emulator.counters) <= {"Registry.list", "Repository.list", "Image.list", "IamToken.create"}


def test_partial_run_closes_nothing_outside_it(tmp_path, yandex_env):
    inv = inventory(registries=2, repositories=6, images=36, seed=9)
    yandex_env(inv)
    pipeline = new_pipeline(tmp_path)
    load(pipeline)
    registry_a, registry_b = sorted(inv.registries)
    repos_a = sorted(inv.registries[registry_a].values(), key=lambda r: r.name)
    target, sibling = repos_a[0], repos_a[1]
    for repo in inv.repositories():
        repo.tags.clear()  # every tag vanishes, but the run reads only `target`
    load(pipeline, repositories=[f"{registry_a}/{target.name}"])
    open_by_repo = dict(query(pipeline, "SELECT registry || ' ' || repository, count(*) FROM tags WHERE valid_to IS NULL GROUP BY ALL"))
    assert f"{registry_of(registry_a)} {target.name}" not in open_by_repo
    assert open_by_repo[f"{registry_of(registry_a)} {sibling.name}"] > 0
    assert any(key.startswith(registry_of(registry_b)) for key in open_by_repo)

    # one registry only: the other registry keeps its open rows
    load(pipeline, registry_ids=[registry_a])
    open_registries = {r for (r,) in query(pipeline, "SELECT DISTINCT registry FROM tags WHERE valid_to IS NULL")}
    assert open_registries == {registry_of(registry_b)}
    load(pipeline)
    assert query(pipeline, "SELECT count(*) FROM tags WHERE valid_to IS NULL")[0][0] == 0


def test_unknown_repository_in_the_filter_raises_not_found(tmp_path, yandex_env):
    inv = inventory(registries=1, repositories=2, images=6, seed=7)
    yandex_env(inv)
    pipeline = new_pipeline(tmp_path)
    with pytest.raises(Exception) as info:
        load(pipeline, repositories=["no/such-repo"])
    error = root_cause(info.value)
    assert isinstance(error, NotFoundError) and "no/such-repo" in str(error)


def test_faults_do_not_change_the_data(tmp_path, yandex_env, monkeypatch):
    monkeypatch.setenv("RUNTIME__REQUEST_BACKOFF_FACTOR", "0")  # retry at once: the test is about data
    inv = inventory(registries=2, repositories=4, images=40, seed=21)
    emulator = yandex_env(inv, faults=Faults(throttle_every=4, error_every=7))
    pipeline = new_pipeline(tmp_path)
    load(pipeline, page_size=5, concurrency=1)
    assert emulator.faults_injected["throttle"] > 0 and emulator.faults_injected["error"] > 0
    assert_matches_inventory(pipeline, inv)


def test_repeating_page_token_stops_with_bad_response(tmp_path, yandex_env):
    from sources.errors import BadResponseError

    inv = inventory(registries=1, repositories=2, images=20, seed=2)
    emulator = yandex_env(inv)
    make_token = emulator._make_token
    emulator._make_token = lambda offset, scope: make_token(3, scope)  # always the same next token
    pipeline = new_pipeline(tmp_path)
    with pytest.raises(Exception) as info:
        load(pipeline, page_size=3)
    error = root_cause(info.value)
    assert isinstance(error, BadResponseError) and "repeats" in str(error)


def test_deleted_registry_closes_its_tags_on_a_full_run(tmp_path, yandex_env):
    inv = inventory(registries=2, repositories=4, images=30, seed=12)
    emulator = yandex_env(inv)
    pipeline = new_pipeline(tmp_path)
    load(pipeline)
    gone, kept = sorted(inv.registries)
    del emulator.registries[gone]  # the registry was deleted from its folder
    del inv.registries[gone]
    load(pipeline)
    open_registries = {r for (r,) in query(pipeline, "SELECT DISTINCT registry FROM tags WHERE valid_to IS NULL")}
    assert open_registries == {registry_of(kept)}
    assert current_tags(pipeline, "yandex") == expected_tags(inv, registry_of)
