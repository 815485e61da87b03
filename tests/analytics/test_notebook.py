"""The inventory notebook runs top to bottom on a generated DuckDB file and saves its figures."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import nbformat
from nbclient import NotebookClient

from tests.analytics import dataset
from tests.support import ROOT as REPOSITORY_ROOT

ROOT = Path(REPOSITORY_ROOT)
NOTEBOOK = ROOT / "notebooks" / "registry_inventory.ipynb"
FIGURES = ["size_distribution", "storage_by_repository", "storage_growth", "tag_history", "cleanup_candidates"]


def test_notebook_runs_read_only_and_saves_its_figures(tmp_path, monkeypatch):
    db = tmp_path / "registry_etl.duckdb"
    dataset.write_duckdb(str(db))  # tables only: the notebook brings its own (temporary) views
    figures = tmp_path / "figures"
    monkeypatch.setenv("REGISTRY_ETL_DUCKDB", str(db))
    monkeypatch.setenv("REGISTRY_ETL_FIGURES", str(figures))
    monkeypatch.setenv("REGISTRY_ETL_REPOSITORY", f"{dataset.OCI}/{dataset.APP}")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("MPLBACKEND", "Agg")

    # hold a read-only connection for the whole run, as another reader would: a notebook that
    # opened the file read-write could not start
    with duckdb.connect(str(db), read_only=True):
        notebook = nbformat.read(NOTEBOOK, as_version=4)
        NotebookClient(notebook, timeout=180, kernel_name="python3",
                       resources={"metadata": {"path": str(tmp_path)}}).execute()

    for name in FIGURES:
        png = figures / f"{name}.png"
        assert png.exists(), name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5_000, name
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "\n".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", "")) for o in outputs)
    assert "15 views ready" in text
    assert "Tag history: " in "".join(c.source for c in notebook.cells)  # the timeline cell ran
    # the DuckDB file was not modified: no views were stored in it
    with duckdb.connect(str(db), read_only=True) as conn:
        assert conn.execute("SELECT COUNT(*) FROM duckdb_views() WHERE schema_name = 'registry'").fetchone() == (0,)
