"""The report in its three formats, from the fixed data set (answers computed by hand)."""

from __future__ import annotations

import csv
import io
import json

import duckdb
import pytest

from pipelines.report import SECTIONS, build_report, human_bytes, render_report, to_json, to_text
from tests.analytics.dataset import APP, ECR, EMPTY, LEGACY, OCI, SVC, digest

SECTION_KEYS = [s.key for s in SECTIONS]


@pytest.fixture(scope="module")
def report(fixed_duckdb):
    """The default report, built once (building creates the views anew)."""
    return build_report(fixed_duckdb)


def test_build_report_sections(report):
    assert list(report.sections) == SECTION_KEYS
    assert report.parameters == {"tag_moves_days": 30, "stale_days": 90, "keep_last": 10}

    registries = {r["registry"]: r for r in report["registries"].records()}
    assert (registries[OCI]["total_bytes"], registries[OCI]["unique_bytes"], registries[OCI]["saved_bytes"]) == (13662, 5962, 7700)
    assert (registries[ECR]["total_bytes"], registries[ECR]["unique_bytes"]) == (5000, 5000)

    largest = [(r["repository"], r["unique_bytes"], r["total_bytes"]) for r in report["largest repositories"].records()]
    assert largest == [
        (f"{ECR}/{LEGACY}", 5000, 5000),
        (f"{OCI}/{APP}", 4639, 9739),
        (f"{OCI}/{SVC}", 2323, 3923),
        (f"{ECR}/{EMPTY}", 0, 0),
    ]

    images = [(r["image"], r["bytes"]) for r in report["largest images"].records()]
    assert images[:3] == [
        (f"{ECR}/{LEGACY}:x", 5000),
        (f"{OCI}/{APP}:multi", 3915),  # the index with both platforms
        (f"{OCI}/{SVC}@{digest('B_2')}", 2312),  # untagged: pulled by digest
    ]
    assert len(images) == 9  # top-level images only: no platform children

    movers = [(r["tag"], r["moves_in_window"], r["moves_all_time"]) for r in report["top tag movers"].records()]
    assert movers == [(f"{OCI}/{SVC}:mover", 1, 2), (f"{OCI}/{APP}:latest", 1, 1)]

    cleanup = [
        (r["registry"], r["reason"], r["images"], r["still_tagged"], r["candidate_bytes"], r["reclaimable_bytes"])
        for r in report["cleanup candidates"].records()
    ]
    assert cleanup == [
        (OCI, "untagged", 4, 0, 3494 + 2312, 394 + 712),
        (OCI, "stale", 3, 2, 6455, 1355),
        # retention (keep 10) deletes nothing; "any" = untagged or stale
        (OCI, "any", 6, 2, 8519 + 2312, 3419 + 712),
    ]
    by_repo = [(r["repository"], r["reclaimable_bytes"]) for r in report["cleanup by repository"].records()]
    assert by_repo == [(f"{OCI}/{APP}", 3419), (f"{OCI}/{SVC}", 712)]


def test_report_parameters_reach_the_views(fixed_duckdb):
    report = build_report(fixed_duckdb, keep_last=2, tag_moves_days=7, limit=1)
    retention = [r for r in report["cleanup candidates"].records() if r["reason"] == "retention"]
    assert [(r["images"], r["reclaimable_bytes"]) for r in retention] == [(4, 3360)]
    assert [(r["tag"], r["moves_in_window"]) for r in report["top tag movers"].records()] == [(f"{OCI}/{SVC}:mover", 0)]
    assert len(report["largest repositories"].rows) == 1


def test_text_format(report):
    text = to_text(report)
    for key in SECTION_KEYS:
        assert f"== {key}: " in text
    assert "tag moves: last 30 days" in text and "keep last 10 per repository" in text
    line = next(l for l in text.splitlines() if l.startswith("oci") and l.split()[1] == f"{OCI}/{APP}")
    assert human_bytes(9739) in line and human_bytes(4639) in line and "2.10" in line
    assert human_bytes(4639) == "4.5 KiB" and human_bytes(512) == "512 B" and human_bytes(3 * 2**30) == "3.0 GiB"


def test_json_format(report):
    document = json.loads(to_json(report))
    assert set(document) == set(SECTION_KEYS) | {"about"}
    assert document["about"]["parameters"]["stale_days"] == 90
    top = document["largest repositories"][0]
    assert top == {
        "provider": "ecr", "repository": f"{ECR}/{LEGACY}", "images": 1, "tags": 1, "untagged": 0,
        "total_bytes": 5000, "unique_bytes": 5000, "dedup_ratio": 1.0,
    }
    assert document["largest images"][1]["created_at"].endswith("+00:00")


def test_csv_format(fixed_duckdb):
    text = render_report(fixed_duckdb, "csv")
    assert text.startswith("section,")
    blocks, current = [], None
    for row in csv.reader(io.StringIO(text)):
        if not row:
            current = None
            continue
        if current is None:
            current = {"header": row, "rows": []}
            blocks.append(current)
        else:
            current["rows"].append(dict(zip(current["header"], row)))
    assert [b["rows"][0]["section"] for b in blocks] == SECTION_KEYS
    registries = {r["registry"]: r for r in blocks[0]["rows"]}
    assert registries[OCI]["unique_bytes"] == "5962" and registries[OCI]["total_bytes"] == "13662"
    cleanup = {r["reason"]: r for r in blocks[4]["rows"]}
    assert cleanup["untagged"]["reclaimable_bytes"] == str(394 + 712)


def test_report_from_a_connection_and_bad_format(fixed_duckdb):
    with duckdb.connect(fixed_duckdb, read_only=True) as conn:
        report = build_report(conn)
    assert report["registries"].rows
    with pytest.raises(ValueError):
        render_report(fixed_duckdb, "xml")
