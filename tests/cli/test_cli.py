"""The `registry-etl` command end to end, in subprocesses, as a user or a scheduler runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import duckdb
import pytest

from emulators.ecr import EcrEmulator, demo_env
from emulators.inventory import Inventory
from tests.support import ROOT


def cli(*args, env=None, timeout=300):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("SOURCES__", "AWS_"))}
    full_env.update(env or {})
    full_env["PYTHONPATH"] = ROOT
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args],
        capture_output=True, text=True, env=full_env, timeout=timeout, cwd=ROOT,
    )


@pytest.fixture
def ecr_emulator():
    emulator = EcrEmulator(Inventory(seed=9, registries=("us-east-1", "eu-west-1"), repositories=6, images=80)).start()
    yield emulator
    emulator.stop()


def test_load_prints_a_summary_and_loads(tmp_path, ecr_emulator):
    db = tmp_path / "registry_etl.duckdb"
    result = cli("load", "ecr", "--duckdb", str(db), "--pipelines-dir", str(tmp_path / "p"), env=demo_env(ecr_emulator))
    assert result.returncode == 0, result.stderr
    assert "images" in result.stdout and "tags" in result.stdout
    expected = sum(len(r.images) for r in ecr_emulator.inventory.repositories())
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM registry.images").fetchone()[0] == expected
    assert f"{expected:,} rows" in result.stdout


def test_wrong_credential_is_one_paragraph_without_traceback(tmp_path, ecr_emulator):
    env = demo_env(ecr_emulator)
    env["AWS_SECRET_ACCESS_KEY"] = "definitely-wrong-secret-0042"
    result = cli("load", "ecr", "--duckdb", str(tmp_path / "x.duckdb"), "--pipelines-dir", str(tmp_path / "p"), "--quiet", env=env)
    assert result.returncode == 3
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1
    assert "DescribeRepositories" in error_lines[0] and "us-east-1" in error_lines[0] and "credentials" in error_lines[0]
    assert "definitely-wrong-secret-0042" not in result.stderr + result.stdout

    debug = cli("--debug", "load", "ecr", "--duckdb", str(tmp_path / "x.duckdb"), "--pipelines-dir", str(tmp_path / "p"), "--quiet", env=env)
    assert debug.returncode == 3 and "Traceback" in debug.stderr
    assert "definitely-wrong-secret-0042" not in debug.stderr + debug.stdout


def test_unknown_repository_exits_not_found(tmp_path, ecr_emulator):
    env = demo_env(ecr_emulator)
    env["SOURCES__ECR__REPOSITORIES"] = '["no/such"]'
    result = cli("load", "ecr", "--duckdb", str(tmp_path / "x.duckdb"), "--pipelines-dir", str(tmp_path / "p"), "--quiet", env=env)
    assert result.returncode == 4
    assert "no/such" in result.stderr and "Traceback" not in result.stderr


def test_missing_configuration_exits_config(tmp_path):
    result = cli("load", "ecr", "--duckdb", str(tmp_path / "x.duckdb"), "--pipelines-dir", str(tmp_path / "p"), "--quiet")
    assert result.returncode == 2
    assert "regions" in result.stderr


def test_demo_then_report_formats(tmp_path):
    db = tmp_path / "demo.duckdb"
    result = cli("demo", "--duckdb", str(db))
    assert result.returncode == 0, result.stderr
    assert "largest repositories" in result.stdout and "Try next" in result.stdout
    as_json = cli("report", "--duckdb", str(db), "--format", "json")
    assert as_json.returncode == 0
    report = json.loads(as_json.stdout)
    assert report["largest repositories"]
    as_csv = cli("report", "--duckdb", str(db), "--format", "csv")
    assert as_csv.returncode == 0 and as_csv.stdout.startswith("section,")


def test_emulate_serves_until_stopped(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "emulate", "ecr"],
        stdout=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT},
    )
    try:
        first = proc.stdout.readline()
        assert "emulator on http://127.0.0.1:" in first
        url = first.split(" on ", 1)[1].split(" ", 1)[0]
        import requests

        assert requests.get(url + "/_emulator/counters", timeout=5).json() == {"requests": {}, "faults": {}, "peak_in_flight": 0}
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
