"""Listing fingerprints: a rerun emits only the repositories whose listing changed, and the tag
history comes out as if every tag had been emitted (no-op, a moved tag, a deleted repository,
lost state). Expected values come from the emulator's inventory."""

from __future__ import annotations

import shutil

import pytest

from sources.model import IMAGE_LAYERS, IMAGES, Rows, batch
from sources.yandex.helpers import YANDEX_IMAGES, UnitMapper
from tests.support import current_tags, expected_tags, new_pipeline, query, rows_as_dicts, tag_history
from tests.yandex.conftest import inventory, load, registry_of
from tests.yandex.test_source import assert_matches_inventory

ALL_TAG_ROWS = "SELECT tag_key, registry, repository, tag, digest, valid_from, valid_to FROM tags ORDER BY ALL"


def tag_rows(pipeline):
    """Every row of the tag history (open and closed), with its validity."""
    return query(pipeline, ALL_TAG_ROWS)


def repository_rows(pipeline):
    return query(pipeline, "SELECT registry, repository, image_count, size_bytes, updated_at, repository_id FROM repositories ORDER BY registry, repository")


def emitted(summary, table):
    """Rows of `table` this run wrote (scope markers of `tags` included)."""
    return summary.rows.get(table, 0)


def movable(inv):
    """A repository with a tag that can move to another top-level image, the tag and the target."""
    for repo in sorted(inv.repositories(), key=lambda r: (r.registry, r.name)):
        for tag in sorted(repo.tags):
            others = sorted(i.digest for i in repo.top_level() if i.digest != repo.tags[tag])
            if others:
                return repo, tag, repo.tags[tag], others[0]
    raise AssertionError("no movable tag in the inventory")


def loaded_once(tmp_path, yandex_env, seed):
    """An inventory of 2 registries x 5 repositories x 50 images behind the emulator, and a
    pipeline that has loaded it once."""
    inv = inventory(registries=2, repositories=5, images=50, seed=seed)
    yandex_env(inv)
    pipeline = new_pipeline(tmp_path)
    load(pipeline)
    return inv, pipeline


def test_noop_rerun_emits_no_rows_and_the_history_is_unchanged(tmp_path, yandex_env):
    inv = inventory(registries=2, repositories=5, images=50, seed=31)
    emulator = yandex_env(inv)
    pipeline = new_pipeline(tmp_path)
    first, _ = load(pipeline)
    assert emitted(first, "tags") == len(expected_tags(inv, registry_of)) + 2  # + one registry marker each
    history, repositories = tag_rows(pipeline), repository_rows(pipeline)

    emulator.reset_counters()
    summary, _ = load(pipeline)
    for table in ("tags", "repositories", "images", "images__layers", "yandex_images"):
        assert emitted(summary, table) == 0, (table, summary.rows)
    assert tag_rows(pipeline) == history
    assert repository_rows(pipeline) == repositories
    assert_matches_inventory(pipeline, inv)
    # the listing is read all the same: Image.list is the only way to the tags
    assert emulator.counters["Image.list"] == 2


def test_a_moved_tag_retires_only_that_tag_and_emits_only_its_repository(tmp_path, yandex_env):
    inv, pipeline = loaded_once(tmp_path, yandex_env, seed=32)
    before = tag_rows(pipeline)
    repo, tag, old, new = movable(inv)
    repo.tags[tag] = new

    summary, _ = load(pipeline)
    key = (registry_of(repo.registry), repo.name, tag)
    assert tag_history(pipeline, "yandex")[key] == [(old, False), (new, True)]
    # every other row of the history is untouched, validity included
    moved = lambda row: (row[1], row[2], row[3]) == key  # noqa: E731
    assert [r for r in tag_rows(pipeline) if not moved(r)] == [r for r in before if not moved(r)]
    # only the changed repository was emitted: its tags and its scope marker, its row
    assert emitted(summary, "tags") == len(repo.tags) + 1
    assert emitted(summary, "repositories") == 1
    assert query(pipeline, "SELECT count(*) FROM tags WHERE valid_to IS NOT NULL") == [(1,)]
    assert_matches_inventory(pipeline, inv)


def test_a_deleted_repository_retires_its_tags(tmp_path, yandex_env):
    inv, pipeline = loaded_once(tmp_path, yandex_env, seed=33)
    before = tag_rows(pipeline)
    registry_id = sorted(inv.registries)[0]
    name = sorted(inv.registries[registry_id])[1]
    gone = inv.registries[registry_id].pop(name)
    assert gone.tags

    summary, _ = load(pipeline)
    registry = registry_of(registry_id)
    rows = query(pipeline, "SELECT tag, digest, valid_to IS NULL FROM tags WHERE registry = %s AND repository = %s ORDER BY tag", registry, name)
    assert rows == [(tag, gone.tags[tag], False) for tag in sorted(gone.tags)]
    assert emitted(summary, "tags") == 1  # its scope marker alone
    assert emitted(summary, "repositories") == 0
    others = lambda row: (row[1], row[2]) != (registry, name)  # noqa: E731
    assert [r for r in tag_rows(pipeline) if others(r)] == [r for r in before if others(r)]
    assert current_tags(pipeline, "yandex") == expected_tags(inv, registry_of)

    # it comes back with the same images: read in full again, its tags open anew
    inv.registries[registry_id][name] = gone
    summary, _ = load(pipeline)
    assert emitted(summary, "tags") == len(gone.tags) + 1
    assert current_tags(pipeline, "yandex") == expected_tags(inv, registry_of)


@pytest.mark.parametrize("lost", ["pipeline_dir", "pipeline_dir_and_destination_state"])
def test_lost_state_reloads_correctly(tmp_path, yandex_env, lost):
    inv, pipeline = loaded_once(tmp_path, yandex_env, seed=34)
    repo, tag, old, new = movable(inv)
    repo.tags[tag] = new
    (deleted_repo, deleted_tag, deleted_digest), = inv.delete_tags(1)
    pushed = inv.push_images(2)

    shutil.rmtree(tmp_path / "pipelines")
    if lost == "pipeline_dir_and_destination_state":
        query(pipeline, "DELETE FROM _dlt_pipeline_state")  # nothing for dlt to restore
    pipeline = new_pipeline(tmp_path)
    load(pipeline)
    assert_matches_inventory(pipeline, inv)
    history = tag_history(pipeline, "yandex")
    assert history[(registry_of(repo.registry), repo.name, tag)] == [(old, False), (new, True)]
    assert not any(is_open for _, is_open in history[(registry_of(deleted_repo.registry), deleted_repo.name, deleted_tag)])
    for target, image in pushed:
        assert query(pipeline, "SELECT count(*) FROM images WHERE repository = %s AND digest = %s", target.name, image.digest) == [(1,)]

    # the fingerprints are back: the next run emits nothing
    rows = tag_rows(pipeline)
    summary, _ = load(pipeline)
    assert emitted(summary, "tags") == 0 and tag_rows(pipeline) == rows


def test_image_and_layer_columns_equal_the_models_dict_rows():
    """The loader builds image and layer rows as columns; the tables equal `batch()` of the dict rows."""
    from tests.yandex.test_mapping import REGISTRY_ID, record

    records = [
        record(),
        record(digest="sha256:" + "b" * 64, config=None, tags=[], layers=[{"id": 7, "digest": "sha256:" + "3" * 64, "size": "12x", "urls": ["u"]}]),
        record(digest="sha256:" + "d" * 64, compressedSize=None, createdAt=None, layers=[]),
    ]
    as_columns = UnitMapper(REGISTRY_ID, lambda registry, repository: set(), Rows(), arrow=True)
    as_dicts = UnitMapper(REGISTRY_ID, lambda registry, repository: set(), Rows())
    for doc in records:
        as_columns.add_image(doc)
        as_dicts.add_image(doc)
    tables = {table.name: arrow for table, arrow in as_columns.details.arrow_tables()}
    as_dicts.finish({})
    rows = as_dicts.rows._rows
    for table in (IMAGES, IMAGE_LAYERS, YANDEX_IMAGES):
        assert tables[table.name].equals(batch(table, rows[table.name])), table.name


def test_fingerprint_is_order_free_and_sees_digests_tags_and_problems():
    from tests.yandex.test_mapping import REGISTRY_ID, record

    def fingerprints(records, previous=None):
        mapper = UnitMapper(REGISTRY_ID, lambda registry, repository: {r["digest"] for r in records}, Rows(), previous)
        for doc in records:
            mapper.add_image(doc)
        return mapper.finish({"team/app": "crprepo0000000000001"}), rows_as_dicts(mapper.rows)

    other = record(digest="sha256:" + "b" * 64, tags=["2.0"])
    first, _ = fingerprints([record(), other])
    assert fingerprints([other, record()])[0] == first  # pages may list images in any order
    assert fingerprints([record(), record(digest="sha256:" + "b" * 64, tags=["2.1"])])[0] != first
    assert fingerprints([record()])[0] != first
    bad = record(layers=[{"id": "x", "digest": "sha256:" + "1" * 64, "size": "big", "urls": []}])
    (marked,) = fingerprints([bad, other])[0].values()
    assert marked.startswith("problems:") and marked != first["team/app"]
    # unchanged and known: no rows at all; a changed repository: its tags under its own marker
    _, rows = fingerprints([record(), other], previous=first)
    assert not rows.get("tags") and not rows.get("repositories")
    _, rows = fingerprints([record(tags=["latest"]), other], previous=first)
    assert sorted((t["tag"] or "", t["scope"] or "") for t in rows["tags"]) == [("", "repository"), ("2.0", ""), ("latest", "")]
