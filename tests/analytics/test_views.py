"""Every view against answers computed by hand from the fixed data set (see dataset.py).

Each test runs on DuckDB and on PostgreSQL (the same SQL files on both engines).
Blob sizes: B1 1000, B2 2000, a1 100, a2 200, a3 300, m1 400, m2 500, u1 50, b1 600, b2 700;
configs: A0 5, A1 10, A2 20, A3 30, AC1 7, AC2 8, AU1 9, B_1 11, B_2 12.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

import analytics
from tests.analytics.dataset import APP, BY_NAME, ECR, EMPTY, LEGACY, OCI, SVC, digest

NAMES = {image.digest: image.name for image in BY_NAME.values()}


def num(value):
    """Postgres sums come back as Decimal; compare plain numbers."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def by_name(rows, *fields, key="digest"):
    return {NAMES[row[key]]: tuple(num(row[f]) for f in fields) for row in rows}


def test_image_sizes(open_views):
    q = open_views()
    rows = q("SELECT * FROM image_sizes")
    got = by_name(rows, "is_index", "is_child", "content_bytes", "children_bytes", "image_bytes", "stored_bytes", "tag_count")
    assert got == {
        "A0": (False, False, 2005, None, 2005, 2005, 0),
        "A1": (False, False, 1110, None, 1110, 1110, 1),
        "A2": (False, False, 1220, None, 1220, 1220, 2),
        "A3": (False, False, 1430, None, 1430, 1430, 0),
        # the index: no content of its own; its children hold 1407 + 2508 bytes
        "AI": (True, False, None, 3915, 3915, 0, 1),
        "AC1": (False, True, 1407, None, 1407, 1407, 0),
        "AC2": (False, True, 2508, None, 2508, 2508, 0),
        "AU": (True, False, None, 59, 59, 0, 0),
        "AU1": (False, True, 59, None, 59, 59, 0),
        "B_1": (False, False, 1611, None, 1611, 1611, 2),
        "B_2": (False, False, 2312, None, 2312, 2312, 0),
        # no blobs known: the reported size stands in
        "C1": (False, False, None, None, 5000, 5000, 1),
    }
    details = {NAMES[r["digest"]]: r for r in rows}
    assert details["AI"]["platforms"] == "linux/amd64, linux/arm64/v8"
    assert details["AI"]["platform_count"] == 2 and details["AC2"]["platform"] == "linux/arm64/v8"
    assert details["AC1"]["parent_index_digest"] == digest("AI")
    assert details["A2"]["tags"] == "latest, v2"
    assert details["A2"]["tag_reference"] == f"{OCI}/{APP}:latest"
    assert details["A1"]["pull_reference"] == f"{OCI}/{APP}@{digest('A1')}"
    assert details["C1"]["blobs_known"] is False and details["A1"]["blobs_known"] is True


def test_image_blobs_and_units(open_views):
    q = open_views()
    blobs = q("SELECT kind, COUNT(*) AS n, SUM(size_bytes) AS bytes FROM image_blobs GROUP BY kind ORDER BY kind")
    # 9 configs (C1 and the two indexes have none); 18 layer references
    assert [(r["kind"], num(r["n"]), num(r["bytes"])) for r in blobs] == [("config", 9, 112), ("layer", 18, 13550)]
    units = q("SELECT * FROM image_units")
    assert by_name(units, "is_tagged", "child_count", "unit_bytes", "exclusive_bytes") == {
        "A0": (False, 0, 2005, 5),  # B2 is also used by AC2 (inside the AI unit)
        "A1": (True, 0, 1110, 10),
        "A2": (True, 0, 1220, 220),
        "A3": (False, 0, 1430, 330),  # a1 is shared with A1
        "AI": (True, 2, 3915, 915),  # 7 + 400 + 8 + 500
        "AU": (False, 1, 59, 59),
        "B_1": (True, 0, 1611, 11),
        "B_2": (False, 0, 2312, 712),
        "C1": (True, 0, 5000, 5000),
    }
    members = q("SELECT unit_digest, image_digest FROM image_unit_members WHERE is_child")
    assert sorted((NAMES[r["unit_digest"]], NAMES[r["image_digest"]]) for r in members) == [
        ("AI", "AC1"), ("AI", "AC2"), ("AU", "AU1"),
    ]


def test_repository_storage_counts_shared_layers_once(open_views):
    q = open_views()
    rows = q("SELECT * FROM repository_storage")
    got = {
        r["repository"]: tuple(num(r[f]) for f in (
            "image_count", "manifest_count", "index_count", "untagged_count", "tag_count",
            "total_bytes", "unique_bytes", "saved_bytes"))
        for r in rows
    }
    assert got == {
        # B1 stored once instead of 4 times (-3000), B2 once instead of twice (-2000), a1 (-100)
        APP: (6, 9, 2, 3, 4, 9739, 4639, 5100),
        SVC: (2, 2, 0, 1, 2, 3923, 2323, 1600),
        LEGACY: (1, 1, 0, 0, 1, 5000, 5000, 0),
        EMPTY: (0, 0, 0, 0, 0, 0, 0, 0),
    }
    ratios = {r["repository"]: r["dedup_ratio"] for r in rows}
    assert ratios[APP] == pytest.approx(9739 / 4639)
    assert ratios[LEGACY] == pytest.approx(1.0)
    assert ratios[EMPTY] is None
    assert {r["repository"]: num(r["repository_size_bytes"]) for r in rows}[LEGACY] == 5000


def test_registry_storage(open_views):
    rows = open_views()("SELECT * FROM registry_storage")
    got = {
        r["registry"]: tuple(num(r[f]) for f in (
            "repository_count", "image_count", "total_bytes", "repository_unique_bytes", "unique_bytes", "saved_bytes"))
        for r in rows
    }
    assert got == {
        # across repositories B1 is stored once more: 4639 + 2323 - 1000 = 5962
        OCI: (2, 8, 13662, 6962, 5962, 7700),
        ECR: (2, 1, 5000, 5000, 5000, 0),
    }
    assert {r["registry"]: r["dedup_ratio"] for r in rows}[OCI] == pytest.approx(13662 / 5962)


def test_shared_layers(open_views):
    rows = open_views()("SELECT * FROM shared_layers")
    layer_names = {digest(n): n for n in ("B1", "B2", "a1", "b1")}
    got = {
        layer_names[r["digest"]]: tuple(num(r[f]) for f in (
            "size_bytes", "image_count", "repository_count", "saved_bytes", "saved_across_repositories_bytes"))
        for r in rows
    }
    assert got == {
        "B1": (1000, 6, 2, 5000, 1000),  # A1 A2 A3 AC1 B_1 B_2
        "B2": (2000, 2, 1, 2000, 0),  # A0 AC2
        "a1": (100, 2, 1, 100, 0),
        "b1": (600, 2, 1, 600, 0),
    }
    assert {r["repositories"] for r in rows if r["digest"] == digest("B1")} == {f"{SVC}, {APP}"}


def test_tag_history_sequences(open_views):
    rows = open_views()("SELECT * FROM tag_history ORDER BY repository, tag, version")
    history = {}
    for r in rows:
        history.setdefault(r["tag"], []).append((NAMES[r["digest"]], r["change"], r["ended_by"], r["is_current"]))
    assert history == {
        "latest": [("A1", "created", "moved", False), ("A2", "moved", None, True)],
        "v1": [("A1", "created", None, True)],
        "v2": [("A2", "created", None, True)],
        "old": [("A0", "created", "deleted", False)],
        "multi": [("AI", "created", None, True)],
        "prod": [("B_1", "created", None, True)],
        "flip": [("B_1", "created", "deleted", False), ("B_1", "restored", None, True)],
        "mover": [("B_2", "created", "moved", False), ("B_1", "moved", "moved", False), ("B_2", "moved", "deleted", False)],
        "x": [("C1", "created", None, True)],
    }
    latest = [r for r in rows if r["tag"] == "latest"]
    assert latest[0]["valid_to"] == latest[1]["valid_from"]
    assert latest[1]["previous_digest"] == digest("A1") and latest[0]["next_digest"] == digest("A2")
    assert latest[1]["tag_reference"] == f"{OCI}/{APP}:latest"


def test_tag_moves_window(open_views):
    rows = open_views()("SELECT * FROM tag_moves")
    assert {r["tag"]: (num(r["moves_in_window"]), num(r["moves_all_time"]), num(r["versions"]), r["window_days"])
            for r in rows} == {
        "latest": (1, 1, 2, 30),  # moved 10 days ago
        "mover": (1, 2, 3, 30),  # moved 44 and 25 days ago
        "flip": (0, 0, 2, 30),  # deleted and restored on the same digest: no move
        **{tag: (0, 0, 1, 30) for tag in ("v1", "v2", "old", "multi", "prod", "x")},
    }
    assert {r["tag"]: r["current_digest"] for r in rows}["latest"] == digest("A2")
    assert {r["tag"]: r["is_current"] for r in rows}["mover"] is False
    week = open_views(tag_moves_days=7)(
        "SELECT tag, moves_in_window, moves_all_time FROM tag_moves WHERE moves_all_time > 0")
    assert {r["tag"]: (num(r["moves_in_window"]), num(r["moves_all_time"])) for r in week} == {
        "latest": (0, 1), "mover": (0, 2),
    }
    quarter = open_views(tag_moves_days=90)("SELECT tag, moves_in_window FROM tag_moves WHERE moves_all_time > 0")
    assert {r["tag"]: num(r["moves_in_window"]) for r in quarter} == {"latest": 1, "mover": 2}


def test_untagged_images_spare_children_of_tagged_index(open_views):
    rows = open_views()("SELECT * FROM untagged_images")
    # AC1/AC2 (children of the tagged index AI) are untagged manifests but never listed;
    # the untagged index AU is listed once, with its child's bytes
    assert by_name(rows, "is_index", "unit_bytes", "exclusive_bytes") == {
        "A0": (False, 2005, 5),
        "A3": (False, 1430, 330),
        "AU": (True, 59, 59),
        "B_2": (False, 2312, 712),
    }


def test_stale_images(open_views):
    rows = open_views()("SELECT * FROM stale_images")
    # A0 pushed 300 d ago but pulled 5 d ago: in use. AI's children are judged with AI.
    assert by_name(rows, "is_tagged", "tags", "stale_days") == {
        "A1": (True, "v1", 90),  # last pulled 150 d ago
        "A3": (False, None, 90),  # pushed 120 d ago, never pulled
        "AI": (True, "multi", 90),  # pushed 400 d ago, never pulled
    }
    month = open_views(stale_days=30)("SELECT digest FROM stale_images")
    assert {NAMES[r["digest"]] for r in month} == {"A1", "A3", "AI", "B_2"}


def test_retention_candidates(open_views):
    assert open_views()("SELECT * FROM retention_candidates") == []  # nobody has more than 10 images
    rows = open_views(keep_last=2)("SELECT * FROM retention_candidates")
    # team/app newest first: AU (2 d), A2 (10 d) kept; then A3, A1, A0, AI. svc has only 2.
    assert by_name(rows, "age_rank", "is_tagged", "unit_bytes") == {
        "A3": (3, False, 1430),
        "A1": (4, True, 1110),
        "A0": (5, False, 2005),
        "AI": (6, True, 3915),
    }
    assert {r["keep_last"] for r in rows} == {2}


def test_cleanup_candidates_and_summary(open_views):
    q = open_views(keep_last=2)
    candidates = q("SELECT digest, reason FROM cleanup_candidates")
    assert sorted((NAMES[r["digest"]], r["reason"]) for r in candidates) == sorted([
        ("A0", "untagged"), ("A3", "untagged"), ("AU", "untagged"), ("B_2", "untagged"),
        ("A1", "stale"), ("A3", "stale"), ("AI", "stale"),
        ("A3", "retention"), ("A1", "retention"), ("A0", "retention"), ("AI", "retention"),
    ])
    assert not {NAMES[r["digest"]] for r in candidates} & {"AC1", "AC2", "AU1"}
    summary = q("SELECT * FROM cleanup_summary")
    got = {
        (r["repository"], r["reason"]): tuple(num(r[f]) for f in (
            "candidate_count", "tagged_count", "candidate_bytes", "reclaimable_bytes"))
        for r in summary
    }
    assert got == {
        # untagged A0 A3 AU: frees cfg 5, cfg 30 + a3 300, cfg 9 + u1 50 (B2, a1, B1 are still used)
        (APP, "untagged"): (3, 0, 3494, 394),
        # stale A1 A3 AI: a1 now frees too (both users go); B1 (A2) and B2 (A0) stay
        (APP, "stale"): (3, 2, 6455, 1355),
        # retention: everything but A2 (cfg 20, B1, a2) and AU (cfg 9, u1): 4639 - 1279
        (APP, "retention"): (4, 2, 8460, 3360),
        # any: everything but A2: 4639 - 1220
        (APP, "any"): (5, 2, 8519, 3419),
        (SVC, "untagged"): (1, 0, 2312, 712),
        (SVC, "any"): (1, 0, 2312, 712),
    }


def test_storage_growth(open_views, fixed_duckdb):
    rows = open_views()("SELECT * FROM storage_growth WHERE registry = '" + OCI + "' AND period = 'day' ORDER BY period_start")
    assert [(num(r["images_pushed"]), num(r["manifests_pushed"]), num(r["bytes_pushed"]), num(r["new_unique_bytes"]))
            for r in rows] == [
        (1, 3, 3915, 3915),  # 400 d: AI with AC1, AC2 (every blob new)
        (1, 1, 2005, 5),  # 300 d: A0 (B2 already seen)
        (1, 1, 1110, 110),  # 200 d: A1
        (1, 1, 1430, 330),  # 120 d: A3
        (1, 1, 1611, 611),  # 50 d: B_1
        (1, 1, 2312, 712),  # 45 d: B_2
        (1, 1, 1220, 220),  # 10 d: A2
        (1, 2, 59, 59),  # 2 d: AU with AU1
    ]
    assert (num(rows[-1]["cumulative_bytes"]), num(rows[-1]["cumulative_unique_bytes"])) == (13662, 5962)
    weeks = open_views()("SELECT * FROM storage_growth WHERE period = 'week' ORDER BY registry, period_start")
    for r in weeks:
        assert r["period_start"].weekday() == 0  # weeks start on Monday
    oci_weeks = [r for r in weeks if r["registry"] == OCI]
    assert sum(num(r["bytes_pushed"]) for r in oci_weeks) == 13662
    assert num(oci_weeks[-1]["cumulative_unique_bytes"]) == 5962
    ecr = [r for r in weeks if r["registry"] == ECR]
    assert [(num(r["bytes_pushed"]), num(r["new_unique_bytes"])) for r in ecr] == [(5000, 5000)]


def test_stored_views_exist_with_comments(fixed_duckdb):
    import duckdb

    with duckdb.connect(fixed_duckdb, read_only=True) as conn:
        comments = dict(conn.execute(
            "SELECT view_name, comment FROM duckdb_views() WHERE schema_name = 'registry'").fetchall())
        assert set(comments) == set(analytics.VIEW_NAMES)
        assert comments["repository_storage"].startswith("how much does each repository store")
        for name in analytics.VIEW_NAMES:
            assert comments[name], name
            conn.execute(f"SELECT * FROM registry.{name} LIMIT 1").fetchall()


def test_every_sql_file_is_portable_and_documented():
    for view in analytics.views():
        text = view.sql
        assert text.startswith(f"-- {view.name}: ") and view.question.endswith("?"), view.name
        # DuckDB-only syntax that Postgres rejects
        for duckdb_only in ("GROUP BY ALL", "QUALIFY", "EXCLUDE", "::", "LIST(", "STRUCT", "%"):
            assert duckdb_only not in text.upper(), (view.name, duckdb_only)
        # Postgres needs an alias on every subquery a base table becomes
        for table in analytics.BASE_TABLES:
            for tail in text.split("{" + table + "}")[1:]:
                assert tail.startswith(" AS "), (view.name, table)


def test_views_on_an_empty_dataset(tmp_path):
    """No load yet (or a source that emits no layers): every view exists and returns no rows."""
    import duckdb

    path = str(tmp_path / "registry_etl.duckdb")
    created = analytics.create_views(path)
    assert created == list(analytics.VIEW_NAMES)
    with duckdb.connect(path, read_only=True) as conn:
        for name in created:
            assert conn.execute(f"SELECT COUNT(*) FROM registry.{name}").fetchone() == (0,), name


def test_bad_parameters_are_refused(fixed_duckdb):
    with pytest.raises(ValueError):
        analytics.create_views(fixed_duckdb, stale_days=-1)
    with pytest.raises(ValueError):
        analytics.create_views(fixed_duckdb, keep_last="10; DROP TABLE x")  # type: ignore[arg-type]


def test_file_destinations_get_no_views(tmp_path):
    import dlt

    pipeline = dlt.pipeline("registry_etl_files", destination=dlt.destinations.filesystem(str(tmp_path / "files")),
                            pipelines_dir=str(tmp_path / "pipelines"), dataset_name="registry")
    assert analytics.create_views(pipeline) == []


class _Recorder:
    """A DuckDB connection seen as a dlt sql client, recording every statement it runs."""

    def __init__(self, path):
        import types

        import duckdb

        self.conn = duckdb.connect(path)
        self.capabilities = types.SimpleNamespace(sqlglot_dialect="duckdb")
        self.dataset_name = "registry"
        self.statements = []

    def execute_sql(self, sql):
        self.statements.append(sql.split(None, 2)[:2])
        return self.conn.execute(sql).fetchall()

    def ddl(self):
        return [" ".join(words) for words in self.statements if words[0] in ("CREATE", "DROP", "COMMENT")]


def _views(path, **parameters):
    """create_views on `path`; the DDL statements it ran and the stored (sql, comment) per view."""
    import duckdb

    recorder = _Recorder(path)
    try:
        assert analytics.create_views(recorder, **parameters) == list(analytics.VIEW_NAMES)
    finally:
        recorder.conn.close()
    # read back as the next run sees them (DuckDB prints a view read from the file, not always
    # as the session that created it did)
    with duckdb.connect(path, read_only=True) as conn:
        stored = {name: (sql, comment) for name, sql, comment in conn.execute(
            "SELECT view_name, sql, comment FROM duckdb_views() WHERE schema_name = 'registry' AND NOT internal").fetchall()}
    return recorder.ddl(), stored


def test_views_are_rewritten_only_when_they_would_differ(tmp_path):
    """Every load ends with create_views(): on DuckDB, views stored exactly as they would be
    created are left alone (no DDL, no WAL); a changed parameter, a table or column that appeared
    since, a dropped view or an edited comment makes them all be created again, in one transaction."""
    import duckdb

    from tests.analytics import dataset

    path = str(tmp_path / "registry_etl.duckdb")
    ddl, empty = _views(path)  # an empty dataset
    assert len([s for s in ddl if s == "CREATE VIEW"]) == len(analytics.VIEW_NAMES)
    assert _views(path) == ([], empty)  # nothing dropped or created

    dataset.write_duckdb(path)  # the base tables appear: the projections change
    ddl, loaded = _views(path)
    assert len([s for s in ddl if s == "CREATE VIEW"]) == len(analytics.VIEW_NAMES)
    assert loaded["image_sizes"] != empty["image_sizes"]
    assert _views(path) == ([], loaded)

    ddl, five = _views(path, stale_days=5)  # another parameter: new SQL
    assert ddl and "'5 days'" in five["stale_images"][0] and "'5 days'" not in loaded["stale_images"][0]
    assert _views(path, stale_days=5) == ([], five)

    with duckdb.connect(path) as conn:
        conn.execute("COMMENT ON VIEW registry.tag_moves IS 'edited'")
    ddl, again = _views(path, stale_days=5)
    assert ddl and again == five
    with duckdb.connect(path) as conn:
        conn.execute("DROP VIEW registry.cleanup_summary")
    ddl, again = _views(path, stale_days=5)
    assert ddl and again == five
    assert _views(path, stale_days=5) == ([], five)
    # a dataset made by plain DDL (no views yet) and the file-path entry point agree
    assert analytics.create_views(path, stale_days=5) == list(analytics.VIEW_NAMES)
