"""The same loads into DuckDB, a real PostgreSQL and Parquet files: the same data and history.

Three rounds against one emulator: a first load, a load after tags moved and vanished and
images were pushed, and a run filtered to one repository after more moves (only that
repository's history may change). After each round every destination must hold what DuckDB
holds, and what the inventory says. A last test does two rounds with the demo data of every
registry in the catalog, so each new source is checked on every destination.
"""

from __future__ import annotations

import os
import uuid

import dlt
import pytest

from pipelines.catalog import PROVIDERS
from pipelines.load import environment, make_pipeline, run_load
from pipelines.runs import last_runs
from pipelines.snapshots import latest_repositories, tag_history as snapshot_tag_history
from tests.ecr.conftest import ecr_registry
from tests.support import (
    current_tags,
    expected_images,
    expected_tags,
    loaded_children,
    loaded_images,
    loaded_layers,
    new_pipeline,
    query,
    table_counts,
    tag_history,
)

pytestmark = pytest.mark.peer


def rounds(inventory, pipelines):
    """Yield after each of three loads into every pipeline (see the module docstring)."""
    for pipeline in pipelines:
        run_load(pipeline, ["ecr"])
    yield "first load"
    inventory.move_tags(4)
    inventory.delete_tags(3)
    inventory.push_images(3)
    for pipeline in pipelines:
        run_load(pipeline, ["ecr"])
    yield "changes"
    repos = sorted(inventory.repositories(), key=lambda r: (r.registry, r.name))
    target = next(r for r in repos if len(r.top_level()) > 1 and r.tags)
    moved = inventory.move_tags(6)  # some in the target repository, most elsewhere
    tag = sorted(target.tags)[0]
    target.tags[tag] = next(d for d in sorted(i.digest for i in target.top_level()) if d != target.tags[tag])
    for pipeline in pipelines:
        options = {"regions": [target.registry], "repositories": [target.name]}
        run_load(pipeline, ["ecr"], source_options={"ecr": options})
    yield ("partial", target, moved)


def test_postgres_holds_what_duckdb_holds(tmp_path, ecr, ecr_inventory, postgres):
    duck = new_pipeline(tmp_path)
    pg = make_pipeline(
        destination=dlt.destinations.postgres(postgres.credentials),
        dataset_name=f"registry_{uuid.uuid4().hex[:8]}",
        pipelines_dir=str(tmp_path / "pg-pipelines"),
    )
    closed_before = None
    for step in rounds(ecr_inventory, [duck, pg]):
        if isinstance(step, tuple):
            closed_after = query(pg, "SELECT count(*) FROM tags WHERE valid_to IS NOT NULL")[0][0]
        else:
            closed_before = query(pg, "SELECT count(*) FROM tags WHERE valid_to IS NOT NULL")[0][0]
            open_before = current_tags(pg, "ecr")
        assert table_counts(pg) == table_counts(duck), step
        assert loaded_images(pg, "ecr") == loaded_images(duck, "ecr")
        assert loaded_layers(pg, "ecr") == loaded_layers(duck, "ecr")
        assert loaded_children(pg, "ecr") == loaded_children(duck, "ecr")
        assert tag_history(pg, "ecr") == tag_history(duck, "ecr"), step
        assert current_tags(pg, "ecr") == current_tags(duck, "ecr"), step
        if not isinstance(step, tuple):  # full runs: exactly the inventory
            assert current_tags(pg, "ecr") == expected_tags(ecr_inventory, ecr_registry)
            assert loaded_images(pg, "ecr") == expected_images(ecr_inventory, ecr_registry)
    # the partial run changed only its repository: elsewhere the moved tags are still open
    _, target, moved = step
    current = current_tags(pg, "ecr")
    for repo, tag, old, new in moved:
        if (repo.registry, repo.name) != (target.registry, target.name):
            assert current[(ecr_registry(repo.registry), repo.name, tag)] == old
    expected_target = {k: v for k, v in expected_tags(ecr_inventory, ecr_registry).items() if k[:2] == (ecr_registry(target.registry), target.name)}
    assert {k: v for k, v in current.items() if k[:2] == (ecr_registry(target.registry), target.name)} == expected_target
    # the analytics views (created after each load when the analytics layer is present) exist
    # on Postgres too and answer the same number of rows
    views_sql = "SELECT table_name FROM information_schema.tables WHERE table_schema = %s AND table_type = 'VIEW'"
    duck_views = {r[0] for r in query(duck, views_sql, duck.dataset_name)}
    assert duck_views, "the analytics views are created after each load"
    assert {r[0] for r in query(pg, views_sql, pg.dataset_name)} == duck_views
    for view in sorted(duck_views):
        assert query(pg, f"SELECT count(*) FROM {view}") == query(duck, f"SELECT count(*) FROM {view}"), view
    # the partial run closed exactly the rows of the tags that moved inside its repository
    changed = [k for k, digest in current.items() if k[:2] == (ecr_registry(target.registry), target.name) and open_before.get(k) != digest]
    assert changed and closed_after - closed_before == len(changed)


def _files_tag_history(pipeline, provider="ecr"):
    """The snapshot log's rebuilt history in support.tag_history's shape."""
    rows = snapshot_tag_history(pipeline, f"WHERE provider = '{provider}' ORDER BY valid_from, valid_to NULLS LAST")
    out = {}
    for row in rows:
        out.setdefault((row["registry"], row["repository"], row["tag"]), []).append((row["digest"], row["valid_to"] is None))
    return out


def _files_current_tags(pipeline):
    rows = snapshot_tag_history(pipeline, "WHERE provider = 'ecr' AND valid_to IS NULL")
    return {(r["registry"], r["repository"], r["tag"]): r["digest"] for r in rows}


def test_parquet_files_hold_what_duckdb_holds(tmp_path, ecr, ecr_inventory):
    duck = new_pipeline(tmp_path)
    files = make_pipeline(
        destination=dlt.destinations.filesystem(str(tmp_path / "bucket")),
        pipelines_dir=str(tmp_path / "fs-pipelines"),
    )
    for step in rounds(ecr_inventory, [duck, files]):
        # images, layers and index children are written once per digest: no duplicates on files
        assert loaded_images(files, "ecr") == loaded_images(duck, "ecr"), step
        assert query(files, "SELECT count(*) FROM images")[0][0] == table_counts(duck)["images"]
        assert loaded_layers(files, "ecr") == loaded_layers(duck, "ecr")
        assert loaded_children(files, "ecr") == loaded_children(duck, "ecr")
        assert _files_tag_history(files) == tag_history(duck, "ecr"), step
        assert _files_current_tags(files) == current_tags(duck, "ecr"), step
        latest = {(r["registry"], r["repository"]): r["image_count"] for r in latest_repositories(files)}
        in_duck = dict(((r, n), c) for r, n, c in query(duck, "SELECT registry, repository, image_count FROM repositories"))
        assert latest == in_duck
    assert _files_current_tags(files) == current_tags(duck, "ecr")
    parquet = list((tmp_path / "bucket" / "registry" / "tags").glob("*.parquet"))
    assert len(parquet) == 3, "one Parquet snapshot of tags per run"


def test_run_log_lands_on_every_destination(tmp_path, ecr, postgres):
    """load_runs next to the data on Postgres and on files, readable by `status` (last_runs)."""
    pg = make_pipeline(
        destination=dlt.destinations.postgres(postgres.credentials),
        dataset_name=f"registry_{uuid.uuid4().hex[:8]}",
        pipelines_dir=str(tmp_path / "pg"),
    )
    files = make_pipeline(destination=dlt.destinations.filesystem(str(tmp_path / "bucket")), pipelines_dir=str(tmp_path / "fs"))
    for pipeline in (pg, files):
        first = run_load(pipeline, ["ecr"], record_run=True)
        second = run_load(pipeline, ["ecr"], record_run=True)
        # read back from a fresh working dir: everything comes from the destination
        fresh = make_pipeline(destination=pipeline.destination, dataset_name=pipeline.dataset_name, pipelines_dir=str(tmp_path / uuid.uuid4().hex))
        runs = last_runs(fresh)
        assert [r["run_id"] for r in runs] == [second.run_id, first.run_id]
        assert [r["outcome"] for r in runs] == ["ok", "ok"]
        assert runs[1]["rows_total"] == sum(first.rows.values()) and runs[1]["requests_total"] == sum(first.requests.values())


# sources whose data may not land the same everywhere yet (none: NCP's duplicate index links on
# files, from re-emitting known digests, were fixed by skipping digests already loaded)
NOT_YET_EQUAL: set = set()


def _start_catalog_emulators():
    """Every registry in the catalog, each on its demo emulator (as `registry-etl demo` runs them)."""
    started, env = [], {}
    for name, provider in PROVIDERS.items():
        if name in NOT_YET_EQUAL:
            continue
        try:
            emulator, provider_env = provider.start_demo_emulator()
        except Exception as exc:  # e.g. the OCI demo needs Debian's docker-registry
            if os.environ.get("CI"):
                raise
            print(f"skipping {name}: {exc}")
            continue
        started.append((name, emulator))
        env.update(provider_env)
    return started, env


def test_every_catalog_source_lands_the_same_in_duckdb_postgres_and_parquet(tmp_path, postgres):
    """The emulators' demo data of every registry, loaded twice (with tags moved and deleted in
    between) into the three destinations: the same images, layers, children and tag history."""
    started, env = _start_catalog_emulators()
    names = [name for name, _ in started]
    try:
        with environment({**env, "AWS_PROFILE": None, "AWS_SESSION_TOKEN": None}):
            duck = new_pipeline(tmp_path)
            pg = make_pipeline(
                destination=dlt.destinations.postgres(postgres.credentials),
                dataset_name=f"registry_{uuid.uuid4().hex[:8]}",
                pipelines_dir=str(tmp_path / "pg"),
            )
            files = make_pipeline(destination=dlt.destinations.filesystem(str(tmp_path / "bucket")), pipelines_dir=str(tmp_path / "fs"))
            changed = set()
            for round_ in ("first", "second"):
                if round_ == "second":
                    for name, emulator in started:
                        # a demo on a real registry (OCI's docker-registry) has no inventory to
                        # change: its second round is a rerun with nothing changed
                        if hasattr(emulator, "inventory"):
                            emulator.inventory.move_tags(3)
                            emulator.inventory.delete_tags(2)
                            changed.add(name)
                for pipeline in (duck, pg, files):
                    run_load(pipeline, names)
                for name in names:
                    images = loaded_images(duck, name)
                    assert images, f"{name}: nothing loaded"
                    history = tag_history(duck, name)
                    assert loaded_images(pg, name) == images == loaded_images(files, name), (round_, name)
                    assert loaded_layers(pg, name) == loaded_layers(duck, name) == loaded_layers(files, name)
                    assert loaded_children(pg, name) == loaded_children(duck, name) == loaded_children(files, name)
                    assert tag_history(pg, name) == history, (round_, name)
                    assert _files_tag_history(files, name) == history, (round_, name)
                    if name in changed:
                        assert any(not is_open for versions in history.values() for _, is_open in versions), name
    finally:
        for _, emulator in started:
            emulator.stop()
