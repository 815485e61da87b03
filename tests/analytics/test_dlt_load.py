"""The views on tables dlt itself created: the scd2 tag history of two real loads."""

from __future__ import annotations

import itertools

import dlt
import pytest

import analytics
from pipelines.report import build_report
from sources.model import IMAGE_LAYERS, IMAGES, TAGS, Rows, scope_marker, tag_row
from pipelines.load import make_pipeline
from tests.support import new_pipeline, query

_databases = itertools.count()

REGISTRY, REPOSITORY = "registry.example.com", "team/app"


def _digest(name: str) -> str:
    return "sha256:" + name.encode().hex().ljust(64, "0")


def fixture_source(tags: dict):
    """Two images sharing a base layer, and the given tag -> image mapping, as a source emits them."""

    @dlt.resource(name="inventory")
    def inventory():
        rows = Rows()
        key = {"provider": "oci", "registry": REGISTRY, "repository": REPOSITORY}
        for name, layers in (("A1", [("base", 1000), ("a1", 100)]), ("A2", [("base", 1000), ("a2", 200)])):
            rows.add(IMAGES, {**key, "digest": _digest(name), "config_digest": _digest("cfg" + name),
                              "config_size_bytes": 10, "size_bytes": 10 + sum(s for _, s in layers)})
            rows.extend(IMAGE_LAYERS, [
                {**key, "image_digest": _digest(name), "position": i, "digest": _digest(layer), "size_bytes": size}
                for i, (layer, size) in enumerate(layers)
            ])
        rows.extend(TAGS, [tag_row("oci", REGISTRY, REPOSITORY, tag, _digest(image)) for tag, image in tags.items()])
        rows.add(TAGS, scope_marker("oci", REGISTRY))
        yield from rows.emit_all()

    return inventory


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.peer)])
def pipeline(request, tmp_path):
    """The registry_etl pipeline on a temporary DuckDB file, or on a fresh PostgreSQL database."""
    if request.param == "duckdb":
        return new_pipeline(tmp_path)
    import psycopg2

    dsn = request.getfixturevalue("postgres_dsn")
    name = f"dlt_views_{next(_databases)}"
    admin = psycopg2.connect(**dsn)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name}")
    admin.close()
    credentials = f"postgresql://{dsn['user']}:{dsn['password']}@{dsn['host']}:{dsn['port']}/{name}"
    return make_pipeline(destination=dlt.destinations.postgres(credentials), pipelines_dir=str(tmp_path / "pipelines"))


def test_views_over_two_dlt_loads(pipeline):
    pipeline.run(fixture_source({"latest": "A1", "stable": "A1"}))
    pipeline.run(fixture_source({"latest": "A2"}))  # latest moved, stable deleted
    assert analytics.create_views(pipeline) == list(analytics.VIEW_NAMES)

    history = query(pipeline, "SELECT tag, digest, change, ended_by, valid_from, valid_to FROM tag_history ORDER BY tag, version")
    assert [(t, d, c, e) for t, d, c, e, _, _ in history] == [
        ("latest", _digest("A1"), "created", "moved"),
        ("latest", _digest("A2"), "moved", None),
        ("stable", _digest("A1"), "created", "deleted"),
    ]
    # dlt closes the old version at the instant the new one starts
    assert history[0][5] == history[1][4] and history[2][5] is not None
    moves = query(pipeline, "SELECT tag, moves_in_window, moves_all_time FROM tag_moves ORDER BY tag")
    assert moves == [("latest", 1, 1), ("stable", 0, 0)]

    storage = query(pipeline, "SELECT total_bytes, unique_bytes, saved_bytes FROM repository_storage")
    assert storage == [(1110 + 1210, 10 + 10 + 1000 + 100 + 200, 1000)]
    untagged = query(pipeline, "SELECT digest FROM untagged_images")
    assert untagged == [(_digest("A1"),)]

    report = build_report(pipeline)  # through the pipeline's sql client, temporary views
    assert report["largest repositories"].records()[0]["unique_bytes"] == 1320
