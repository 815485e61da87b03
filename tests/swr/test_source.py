"""The SWR source against the emulator: exact data, paging, incremental reruns, history, faults."""

from __future__ import annotations

from urllib.parse import unquote

import pytest

from emulators.base import Faults, Response
from emulators.inventory import Inventory
from emulators.swr import SEED_DIGEST, SEED_NAMESPACE, SEED_REPOSITORY, SEED_SIZE, SwrEmulator, demo_inventory
from pipelines.cli import _root_cause, main
from sources.errors import ApiError, BadResponseError, NotFoundError
from tests.support import count_json_parses, current_tags, loaded_children, loaded_layers, new_pipeline, query, table_counts, tag_history, truncate_us
from tests.swr.conftest import (
    expected_children,
    expected_images,
    expected_layers,
    expected_repositories,
    expected_tags,
    load,
    swr_registry,
)


def loaded_images(pipeline):
    rows = query(
        pipeline,
        "SELECT registry, repository, digest, size_bytes, created_at, media_type, layer_count, child_count"
        " FROM images WHERE provider = 'swr'",
    )
    return {tuple(r[:3]): tuple(r[3:]) for r in rows}


def loaded_repositories(pipeline):
    rows = query(
        pipeline,
        "SELECT registry, repository, created_at, updated_at, image_count, pull_count, size_bytes, path"
        " FROM repositories WHERE provider = 'swr'",
    )
    return {tuple(r[:2]): tuple(r[2:]) for r in rows}


def tags_table(pipeline):
    return sorted(query(pipeline, "SELECT registry, repository, tag, digest, valid_from, valid_to FROM tags"))


def assert_matches_inventory(pipeline, inventory, emulator):
    assert loaded_images(pipeline) == expected_images(inventory)
    assert loaded_layers(pipeline, "swr") == expected_layers(inventory)
    assert loaded_children(pipeline, "swr") == expected_children(inventory)
    assert current_tags(pipeline, "swr") == expected_tags(inventory)
    assert loaded_repositories(pipeline) == expected_repositories(inventory, emulator)


def test_acceptance_size_is_exact_and_includes_the_seed_record(tmp_path, swr_env, capsys):
    inventory = demo_inventory()
    counts = inventory.counts()
    assert (len(inventory.registries), counts["repositories"], counts["tags"]) == (3, 60, 2000)
    emulator = swr_env(inventory)
    # `registry-etl load swr`, as a user runs it
    code = main(["load", "swr", "--quiet", "--duckdb", str(tmp_path / "registry_etl.duckdb"),
                 "--pipelines-dir", str(tmp_path / "pipelines")])
    assert code == 0
    assert "requests: list_namespaces 1, list_repositories 3, list_tags 60" in capsys.readouterr().out
    pipeline = new_pipeline(tmp_path)
    assert_matches_inventory(pipeline, inventory, emulator)
    assert query(pipeline, "SELECT count(*) FROM tags WHERE valid_to IS NULL")[0][0] == 2000
    assert query(pipeline, "SELECT count(*) FROM repositories")[0][0] == 60
    # seed 004: the documentation's example record, byte for byte
    registry = swr_registry(SEED_NAMESPACE)
    assert query(
        pipeline,
        "SELECT size_bytes, config_digest, config_size_bytes, layer_count FROM images WHERE registry = %s AND repository = %s AND digest = %s",
        registry, SEED_REPOSITORY, SEED_DIGEST,
    ) == [(SEED_SIZE, "sha256:741f24a795d6d93d7c6edd11780d63c13e16c39615dd9d223378a57a836f2ee6", 1862, 2)]
    assert query(
        pipeline,
        "SELECT position, digest, size_bytes FROM images__layers WHERE repository = %s ORDER BY position",
        SEED_REPOSITORY,
    ) == [
        (0, "sha256:8ac8bfaff55af948c796026ee867448c5b5b5d9dd3549f4006d9759b25d4a893", 1292800),
        (1, "sha256:77ddbf3a9fe11e81761a0f9df43a28e3e6f29bbb53c0c8cf71cd7efa69729aed", 10240),
    ]
    assert current_tags(pipeline, "swr")[(registry, SEED_REPOSITORY, "latest")] == SEED_DIGEST
    # {registry}/{repository}:{tag} is SWR's own pull path
    pulls = query(pipeline, "SELECT t.registry || '/' || t.repository || ':' || t.tag, s.path FROM tags t"
                            " JOIN swr_tags s USING (registry, repository, tag) WHERE t.valid_to IS NULL")
    assert pulls and all(reference == path for reference, path in pulls)
    # one listing page per namespace, one tag page per repository
    assert dict(emulator.counters) == {"list_namespaces": 1, "list_repositories": 3, "list_tags": 60}
    assert query(pipeline, "SELECT count(*) FROM swr_repositories")[0][0] == 60
    # tag times: created = the image's push, updated = when the tag was last pointed (nanoseconds cut to µs)
    swr_tags = query(pipeline, "SELECT registry, repository, tag, created_at, updated_at, size_bytes FROM swr_tags")
    assert {tuple(r[:3]): tuple(r[3:]) for r in swr_tags} == {
        (swr_registry(repo.registry), repo.name, tag): (
            truncate_us(repo.images[digest].created_ns),
            truncate_us(emulator.tag_updated_ns(repo, tag)),
            repo.images[digest].content_size,
        )
        for repo in inventory.repositories()
        for tag, digest in repo.tags.items()
    }


def test_paging_reads_every_page_and_checks_content_range(tmp_path, swr_env, monkeypatch):
    inventory = Inventory(seed=3, registries=("ns-one", "ns-two"), repositories=15, images=90)
    emulator = swr_env(inventory)
    pipeline = new_pipeline(tmp_path)
    parses = count_json_parses(monkeypatch)
    _, counter = load(pipeline, page_limit=4)
    assert_matches_inventory(pipeline, inventory, emulator)
    # every answer parsed once: its records and the paginator's checks come from one parse
    assert len(parses) == sum(counter.values()) == sum(emulator.counters.values())
    pages = lambda n: max(1, -(-n // 4))  # noqa: E731 - no empty page past the announced total
    assert emulator.counters["list_repositories"] == sum(pages(len(r)) for r in inventory.registries.values())
    assert emulator.counters["list_tags"] == sum(pages(len(r.tags)) for r in inventory.repositories())
    assert max(len(r.tags) for r in inventory.repositories()) > 8  # several tag pages were needed


class OverstatingEmulator(SwrEmulator):
    """Announces one record more than it serves: a gap the client must not accept."""

    def _page(self, request, records, render=None):
        response = super()._page(request, records, render)
        first, rest = response.headers["Content-Range"].split("/")
        response.headers["Content-Range"] = f"{first}/{int(rest) + 1}"
        return response


class OffsetIgnoringEmulator(SwrEmulator):
    """Serves the first page whatever offset is asked: paging would repeat records forever."""

    def _page(self, request, records, render=None):
        limit = int(request.param("limit") or len(records))
        page = [render(r) for r in records[:limit]] if render else records[:limit]
        return Response(200, page, {"Content-Range": f"0-{len(page)}/{len(records)}"})


class OnceOverstatingEmulator(OverstatingEmulator):
    """Overstates the first listing only, as a repository pushed while the listing was paged would."""

    calls = 0

    def _page(self, request, records, render=None):
        type(self).calls += 1
        return super()._page(request, records, render) if self.calls == 1 else SwrEmulator._page(self, request, records, render)


def test_a_listing_that_changed_while_paged_is_read_again(tmp_path, swr_env):
    inventory = Inventory(seed=3, registries=("ns-one",), repositories=3, images=12)
    OnceOverstatingEmulator.calls = 0
    emulator = swr_env(inventory, emulator_class=OnceOverstatingEmulator)
    pipeline = new_pipeline(tmp_path)
    load(pipeline)
    assert emulator.counters["list_repositories"] == 2
    assert_matches_inventory(pipeline, inventory, emulator)


def test_images_missing_from_the_destination_are_loaded_again_despite_the_kept_stamp(tmp_path, swr_env):
    inventory = Inventory(seed=4, registries=("ns-one",), repositories=3, images=12)
    emulator = swr_env(inventory)
    pipeline = new_pipeline(tmp_path)
    load(pipeline)
    lost = sorted(inventory.registries["ns-one"])[0]
    with pipeline.sql_client() as client:  # someone emptied part of the destination
        client.execute_sql("DELETE FROM images WHERE repository = %s", lost)
    emulator.reset_counters()
    load(pipeline)
    assert emulator.counters["list_tags"] == 1  # that repository only, though its updated_at did not move
    assert_matches_inventory(pipeline, inventory, emulator)


@pytest.mark.parametrize("emulator_class,message", [(OverstatingEmulator, "announced"), (OffsetIgnoringEmulator, "starts at")])
def test_content_range_disagreeing_with_the_records_is_an_error(tmp_path, swr_env, emulator_class, message):
    swr_env(Inventory(seed=3, registries=("ns-one",), repositories=6, images=20), emulator_class=emulator_class)
    with pytest.raises(Exception) as info:
        load(new_pipeline(tmp_path), page_limit=4)
    error = _root_cause(info.value)
    assert isinstance(error, BadResponseError) and message in str(error)
    assert "list_repositories" in str(error)


def test_rerun_reads_tags_of_changed_repositories_only_and_keeps_history(tmp_path, swr_env):
    inventory = Inventory(seed=5, registries=("ns-a", "ns-b"), repositories=10, images=200)
    emulator = swr_env(inventory)
    pipeline = new_pipeline(tmp_path)
    load(pipeline)
    first_images = loaded_images(pipeline)
    before = {row[:3]: row for row in tags_table(pipeline)}

    moves = inventory.move_tags(4)
    deletes = inventory.delete_tags(3)
    pushes = inventory.push_images(2)
    changed = {(r.registry, r.name) for r, *_ in moves} | {(r.registry, r.name) for r, *_ in deletes}
    changed |= {(r.registry, r.name) for r, _ in pushes}
    # and one untouched repository is deleted altogether
    gone = next(r for r in sorted(inventory.repositories(), key=lambda r: r.name) if (r.registry, r.name) not in changed)
    del inventory.registries[gone.registry][gone.name]
    assert 0 < len(changed) < 9
    emulator.reset_counters()
    load(pipeline)
    assert dict(emulator.counters) == {"list_namespaces": 1, "list_repositories": 2, "list_tags": len(changed)}
    assert current_tags(pipeline, "swr") == expected_tags(inventory)
    # images stay once loaded (digests are immutable); new ones are added
    assert loaded_images(pipeline) == {**first_images, **expected_images(inventory)}
    repositories = loaded_repositories(pipeline)
    assert repositories.pop((swr_registry(gone.registry), gone.name))  # the row stays, as images do
    assert repositories == expected_repositories(inventory, emulator)
    # the vanished repository's tags are closed without a call for them
    closed = query(pipeline, "SELECT count(*), count(valid_to) FROM tags WHERE repository = %s", gone.name)
    assert closed == [(len(gone.tags), len(gone.tags))]
    changed.add((gone.registry, gone.name))

    history = tag_history(pipeline, "swr")
    deleted = {(r.name, t) for r, t, _ in deletes}
    for repo, tag, old, new in moves:
        if (repo.name, tag) not in deleted:
            assert history[(swr_registry(repo.registry), repo.name, tag)] == [(old, False), (new, True)]
    for repo, tag, _ in deletes:
        assert all(not is_open for _, is_open in history[(swr_registry(repo.registry), repo.name, tag)])
    # the history of repositories whose tags were not read is untouched, row for row
    after = {row[:3]: row for row in tags_table(pipeline)}
    for key, row in before.items():
        namespace = key[0].rsplit("/", 1)[1]
        if (namespace, key[1]) not in changed:
            assert after[key] == row

    # nothing changed: listings only, no tag call, no new row anywhere
    snapshot, counts = tags_table(pipeline), table_counts(pipeline)
    emulator.reset_counters()
    load(pipeline)
    assert dict(emulator.counters) == {"list_namespaces": 1, "list_repositories": 2}
    assert tags_table(pipeline) == snapshot
    assert table_counts(pipeline) == counts


class BrokenManifestEmulator(SwrEmulator):
    """Serves an unreadable manifest for one digest and none at all for another."""

    broken: dict = {}

    def _tag_record(self, repo, tag):
        record = super()._tag_record(repo, tag)
        fault = self.broken.get(record["digest"])
        if fault == "invalid":
            record["manifest"] = '{"schemaVersion": 2, "layers": ['
        elif fault == "missing":
            del record["manifest"]
        return record


def test_a_tag_with_a_bad_manifest_still_loads_its_tag_and_image(tmp_path, swr_env):
    inventory = Inventory(seed=12, registries=("ns-a",), repositories=3, images=30)
    singles = [
        (repo, digest) for repo in inventory.repositories() for digest in sorted(set(repo.tags.values()))
        if not repo.images[digest].is_index
    ]
    (repo1, invalid), (repo2, missing) = singles[0], singles[-1]
    BrokenManifestEmulator.broken = {invalid: "invalid", missing: "missing"}
    # (and with an IAM token instead of AK/SK)
    emulator = swr_env(inventory, emulator_class=BrokenManifestEmulator, auth="token")
    pipeline = new_pipeline(tmp_path)
    load(pipeline)

    images = expected_images(inventory)
    layers = expected_layers(inventory)
    for repo, digest in ((repo1, invalid), (repo2, missing)):
        key = (swr_registry(repo.registry), repo.name, digest)
        size, created, *_ = images[key]
        images[key] = (size, created, None, None, None)  # size and time from the record; no manifest
        del layers[key]
    assert loaded_images(pipeline) == images
    assert loaded_layers(pipeline, "swr") == layers
    assert current_tags(pipeline, "swr") == expected_tags(inventory)
    problems = query(pipeline, "SELECT repository, call, object, reason FROM load_problems ORDER BY repository, object")
    expected_objects = sorted(
        [(repo1.name, f"{repo1.name}:{t}") for t in repo1.tags_of(invalid)][:1]
        + [(repo2.name, f"{repo2.name}:{t}") for t in repo2.tags_of(missing)][:1]
    )
    assert sorted((r[0], r[2]) for r in problems) == expected_objects
    assert all(call == "list_tags" for _, call, _, _ in problems)
    reasons = " ".join(r[3] for r in problems)
    assert "not valid JSON" in reasons and "no manifest" in reasons
    assert emulator.counters["list_tags"] == 3


def test_faults_do_not_change_the_data(tmp_path, swr_env, monkeypatch):
    inventory = Inventory(seed=21, registries=("ns-a", "ns-b"), repositories=8, images=120)
    emulator = swr_env(inventory, Faults(throttle_every=5, error_every=9, drop_every=13, truncate_every=17))
    monkeypatch.setenv("RUNTIME__REQUEST_MAX_ATTEMPTS", "10")
    pipeline = new_pipeline(tmp_path)
    # one repository at a time: retries then follow each other, so the faults they meet are fixed
    load(pipeline, page_limit=5, concurrency=1)
    assert all(emulator.faults_injected[kind] > 0 for kind in ("throttle", "error", "drop", "truncate"))
    assert_matches_inventory(pipeline, inventory, emulator)


def test_configured_namespaces_only_and_unknown_namespace_is_not_found(tmp_path, swr_env, caplog):
    inventory = Inventory(seed=2, registries=("ns-a", "ns-b", "ns-c"), repositories=9, images=40)
    emulator = swr_env(inventory)
    pipeline = new_pipeline(tmp_path)
    # (with a pull host of its own, as a private deployment has)
    load(pipeline, namespaces="ns-b", registry_host="registry.example.com")
    only_b = {
        ("registry.example.com/ns-b", repository, tag): digest
        for (registry, repository, tag), digest in expected_tags(inventory).items()
        if registry == swr_registry("ns-b")
    }
    assert current_tags(pipeline, "swr") == only_b
    assert "set [sources.swr] registry_host" in caplog.text  # the emulator's paths name another host
    assert emulator.counters["list_repositories"] == 1
    with pytest.raises(Exception) as info:
        load(pipeline, namespaces=["ns-a", "no-such-ns"])
    error = _root_cause(info.value)
    assert isinstance(error, NotFoundError) and "no-such-ns" in str(error)


class VanishingRepositoryEmulator(SwrEmulator):
    """A repository deleted between the listing and its tag call: the tag call answers 404."""

    vanishing = ""

    def _tags(self, request):
        if self.vanishing.replace("/", "$") in unquote(request.path):
            return self.service_error(404, "SVCSTG.SWR.4040003", "Repository not found")
        return super()._tags(request)


def test_a_repository_deleted_during_the_load_is_a_problem_not_a_failure(tmp_path, swr_env):
    inventory = Inventory(seed=6, registries=("ns-a",), repositories=3, images=12)
    VanishingRepositoryEmulator.vanishing = vanishing = sorted(inventory.registries["ns-a"])[-1]
    emulator = swr_env(inventory, emulator_class=VanishingRepositoryEmulator)
    pipeline = new_pipeline(tmp_path)
    load(pipeline)
    expected = {k: v for k, v in expected_tags(inventory).items() if k[1] != vanishing}
    assert current_tags(pipeline, "swr") == expected
    problems = query(pipeline, "SELECT repository, call, reason FROM load_problems")
    assert problems == [(vanishing, "list_tags", problems[0][2])] and "SVCSTG.SWR.4040003" in problems[0][2]
    # its stamp was not kept: the next run asks again
    emulator.reset_counters()
    load(pipeline)
    assert emulator.counters["list_tags"] == 1


class FailingListingEmulator(SwrEmulator):
    def _repositories(self, request):
        return self.server_error_response("list_repositories")


def test_a_listing_that_keeps_failing_is_retried_then_a_clear_api_error(tmp_path, swr_env, monkeypatch):
    emulator = swr_env(Inventory(seed=1, registries=("ns-a",), repositories=1, images=2), emulator_class=FailingListingEmulator)
    monkeypatch.setenv("RUNTIME__REQUEST_MAX_ATTEMPTS", "3")
    with pytest.raises(Exception) as info:
        load(new_pipeline(tmp_path))
    error = _root_cause(info.value)
    assert isinstance(error, ApiError) and error.status == 500
    assert "list_repositories" in str(error) and "SVCSTG.SWR.5000001" in str(error)
    assert emulator.counters["list_repositories"] == 3  # dlt's retries, then our error


@pytest.mark.parametrize("body,message", [(b"<html>gateway</html>", "not JSON"), (b"\xff\xfe{", "not JSON")])
def test_a_tag_listing_that_is_not_json_is_a_bad_response_and_nothing_loads(tmp_path, swr_env, body, message):
    """SWR's pages are parsed by our client (not dlt's), so its errors must still read as ours."""
    emulator = swr_env(Inventory(seed=3, registries=("ns-one",), repositories=3, images=12))
    emulator.corrupt("list_tags", lambda request, response: Response(200, body, content_type="text/html"))
    pipeline = new_pipeline(tmp_path)
    with pytest.raises(Exception) as info:
        load(pipeline)
    error = _root_cause(info.value)
    assert isinstance(error, BadResponseError) and message in str(error) and "list_tags" in str(error)
    assert query(pipeline, "SELECT count(*) FROM information_schema.tables WHERE table_name = 'tags'")[0][0] == 0


def test_pages_of_repositories_are_read_one_after_another_within_the_concurrency(tmp_path, swr_env, monkeypatch):
    """Several pages of repositories, rows yielded after each repository: no more than
    `concurrency` calls at once. (An item per page let dlt read the pages' transformer calls
    round robin, each page with its own threads: the calls in flight multiplied by the pages.)"""
    import sources.swr as swr_module

    monkeypatch.setattr(swr_module, "PAGE_LIMIT", 3)
    monkeypatch.setattr(swr_module, "EMIT_ROWS", 1)
    inventory = Inventory(seed=61, registries=("ns-a", "ns-b"), repositories=16, images=96)
    emulator = swr_env(inventory, Faults(latency_ms=100))
    pipeline = new_pipeline(tmp_path)
    load(pipeline, concurrency=2, page_limit=3)
    assert_matches_inventory(pipeline, inventory, emulator)
    assert emulator.peak_in_flight == 2
