"""The DuckDB destination `make_pipeline` builds (pipelines/duckdb_destination.py): dlt's duckdb
with a merge de-duplication that spills, and the memory limit of `.dlt/config.toml`.

Rows staged twice under one key (what a load job re-run after a crash leaves in staging) must
become one row; a merge must still replace a key's row; and the de-duplication must finish
under a memory limit far below the staged data, where dlt's window de-duplication fails.
"""

from __future__ import annotations

import json

import dlt
import pytest

from pipelines.duckdb_destination import SpillableMergeDuckDbClient
from pipelines.load import environment
from sources.model import IMAGE_LAYERS, emit
from tests.support import new_pipeline, query

GLOBAL_CONFIG = "DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG"


def layer(repository: str, image: str, position: int, digest: str, size: int = 1):
    return {
        "provider": "ecr", "registry": "r", "repository": repository, "image_digest": image,
        "position": position, "digest": digest, "size_bytes": size, "media_type": "m",
    }


def layers_source(pages):
    @dlt.resource(name="layers")
    def layers():
        for page in pages:
            yield emit(IMAGE_LAYERS, page)

    @dlt.source(name="test_layers")
    def source():
        return layers()

    return source()


def rows(pipeline):
    return query(pipeline, "SELECT repository, image_digest, position, digest, size_bytes FROM images__layers"
                 " ORDER BY 1, 2, 3")


def test_same_dlt_duckdb_type_and_settings(tmp_path):
    pipeline = new_pipeline(tmp_path)
    assert pipeline.destination.destination_type == "dlt.destinations.duckdb"
    assert pipeline.destination.destination_name == "duckdb"
    assert pipeline.destination.client_class is SpillableMergeDuckDbClient
    pipeline.run(layers_source([[layer("a", "sha256:1", 0, "sha256:l0")]]))
    limit, order = query(pipeline, "SELECT current_setting('memory_limit'), current_setting('preserve_insertion_order')")[0]
    assert (limit, order) == ("244.1 MiB", False)  # .dlt/config.toml: 256MB (DuckDB shows MiB)


def test_key_staged_twice_becomes_one_row_and_merge_replaces(tmp_path):
    pipeline = new_pipeline(tmp_path)
    first = [layer("a", "sha256:1", 0, "sha256:l0"), layer("a", "sha256:1", 1, "sha256:l1")]
    # the same page twice in one package: every key staged twice
    pipeline.run(layers_source([first, first]))
    assert rows(pipeline) == [("a", "sha256:1", 0, "sha256:l0", 1), ("a", "sha256:1", 1, "sha256:l1", 1)]

    changed = [layer("a", "sha256:1", 1, "sha256:l1", size=7), layer("b", "sha256:2", 0, "sha256:l2")]
    pipeline.run(layers_source([changed, changed]))
    assert rows(pipeline) == [
        ("a", "sha256:1", 0, "sha256:l0", 1),  # not in the load: kept
        ("a", "sha256:1", 1, "sha256:l1", 7),  # replaced
        ("b", "sha256:2", 0, "sha256:l2", 1),  # new
    ]


def test_dedup_finishes_under_a_small_memory_limit(tmp_path):
    # ~60 MB of staged layer rows (each staged twice) under a 64 MB limit: dlt's ROW_NUMBER
    # window failed here with OutOfMemoryException; the grouped semi join spills
    count = 150_000
    page = [layer(f"team/service-{i % 500:03d}", f"sha256:{i // 5:064x}", i % 5, f"sha256:{i:064x}")
            for i in range(count)]
    settings = json.dumps({"preserve_insertion_order": False, "memory_limit": "64MB"})
    # one load job at a time: each concurrent staging insert holds its own buffers
    with environment({GLOBAL_CONFIG: settings, "LOAD__WORKERS": "1"}):
        pipeline = new_pipeline(tmp_path)
        pipeline.run(layers_source([page, page]))
        assert query(pipeline, "SELECT current_setting('memory_limit')")[0][0] == "61.0 MiB"
        total, keys, digests = query(
            pipeline,
            "SELECT count(*), count(DISTINCT (repository, image_digest, position)), count(DISTINCT digest)"
            " FROM images__layers",
        )[0]
    assert (total, keys, digests) == (count, count, count)


@pytest.mark.parametrize("strategy", ["upsert", "insert-only"])
def test_why_not_upsert_or_insert_only(tmp_path, strategy):
    """The merge strategies without de-duplication keep a key staged twice twice (DuckDB's MERGE
    inserts every unmatched source row): the reason `delete-insert` stays (benchmarks/README.md)."""
    import duckdb

    con = duckdb.connect(str(tmp_path / "m.duckdb"))
    con.execute("CREATE TABLE d (k INT, v INT); CREATE TABLE s (k INT, v INT); INSERT INTO s VALUES (1, 1), (1, 1)")
    update = "WHEN MATCHED THEN UPDATE SET v = s.v " if strategy == "upsert" else ""
    con.execute(f"MERGE INTO d USING s ON d.k = s.k {update}WHEN NOT MATCHED THEN INSERT (k, v) VALUES (s.k, s.v)")
    assert con.execute("SELECT count(*) FROM d").fetchone()[0] == 2


# ---- the fixed cost of a run (issue 7): same configuration and statements, less work


def test_a_file_path_is_taken_and_printed_as_dlt_does(tmp_path):
    from dlt.destinations.impl.duckdb.configuration import DuckDbCredentials

    from pipelines.duckdb_destination import RegistryDuckDbCredentials

    for path in (str(tmp_path / "registry_etl.duckdb"), "relative dir/my-data_1.duckdb", str(tmp_path / "a:b@c.duckdb")):
        ours, dlts = RegistryDuckDbCredentials(path), DuckDbCredentials(path)
        assert ours.database == dlts.database == path
        assert str(ours) == str(dlts)  # what every load's step info prints
        assert ours.to_native_representation() == dlts.to_native_representation()
    url = RegistryDuckDbCredentials(f"duckdb:///{tmp_path}/u.duckdb")  # a URL still goes through dlt
    assert url.database == f"{tmp_path}/u.duckdb"


def test_capabilities_without_a_configuration_are_dlts(tmp_path):
    from dlt.common.normalizers.naming import snake_case, sql_cs_v1
    from dlt.destinations import duckdb as dlt_duckdb

    from pipelines.duckdb_destination import registry_duckdb

    path = str(tmp_path / "c.duckdb")
    for naming in (None, snake_case.NamingConvention(), sql_cs_v1.NamingConvention()):
        ours, dlts = registry_duckdb(path).capabilities(naming=naming), dlt_duckdb(path).capabilities(naming=naming)
        assert dict(ours) == dict(dlts)


def test_literal_arguments_read_back_as_bound_ones(tmp_path):
    """dlt binds its arguments (DuckDB then imports pandas); ours are literals where one reads
    back the same value of the same type, and bound otherwise."""
    from datetime import datetime, timedelta, timezone
    from decimal import Decimal

    from pipelines.duckdb_destination import LiteralArgsDuckDbSqlClient, inline_args

    values = [
        None, True, False, 0, -7, 2**62, 1.5, -1e-300, "", "it's", "a'b%s?c;--", "ü€😀", "back\\slash\nnewline",
        datetime(2026, 1, 2, 3, 4, 5, 678901), datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone(timedelta(hours=2))),
    ]
    pipeline = new_pipeline(tmp_path)
    with pipeline.sql_client() as client:
        assert isinstance(client, LiteralArgsDuckDbSqlClient)
        select = "SELECT " + ", ".join(["%s, typeof(%s)"] * len(values))
        args = [v for value in values for v in (value, value)]
        assert inline_args(select, args) is not None
        literal = client.execute_sql(select, *args)
        bound = client.native_connection.execute(select.replace("%s", "?"), args).fetchall()
        assert literal == bound
        # no exact literal: bound as dlt binds it
        assert inline_args("SELECT %s", [Decimal("1.5")]) is None and inline_args("SELECT %s", [float("nan")]) is None
        assert client.execute_sql("SELECT %s, %s", Decimal("1.5"), "x") == [(Decimal("1.5"), "x")]
        assert inline_args("SELECT %s, %s", ["only one"]) is None  # placeholders and values must pair


def test_connection_settings_are_dlts(tmp_path):
    """The SETs of each connection carry literals now: the settings are the ones dlt's own duckdb
    destination makes (.dlt/config.toml and dlt's defaults)."""
    from dlt.destinations import duckdb as dlt_duckdb

    settings = ("SELECT current_setting('TimeZone'), current_setting('checkpoint_threshold'),"
                " current_setting('preserve_insertion_order'), current_setting('memory_limit'),"
                " current_setting('search_path'), current_schema()")
    ours = query(new_pipeline(tmp_path), settings)
    theirs = dlt.pipeline("dlt_duckdb", destination=dlt_duckdb(str(tmp_path / "dlt.duckdb")),
                          pipelines_dir=str(tmp_path / "dlt_pipelines"), dataset_name="registry")
    with theirs.sql_client() as client:
        expected = [tuple(row) for row in client.execute_sql(settings)]
    assert ours == expected and ours[0][:4] == ("UTC", "953.6 MiB", False, "244.1 MiB")
