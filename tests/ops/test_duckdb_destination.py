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
    assert (limit, order) == ("381.4 MiB", False)  # .dlt/config.toml: 400MB (DuckDB shows MiB)


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
