"""`registry-etl load ncp` end to end in a subprocess, as a scheduler runs it."""

from __future__ import annotations

import duckdb
import pytest

from emulators.inventory import Inventory
from emulators.ncp import NcpEmulator, demo_env
from tests.cli.test_cli import cli
from tests.ncp.conftest import expected_tags

WRONG_SECRET = "ncp-wrong-secret-value-0077"


@pytest.fixture
def emulator():
    started = NcpEmulator(Inventory(seed=12, registries=("reg-a", "reg-b"), repositories=4, images=40)).start()
    yield started
    started.stop()


def test_load_prints_the_calls_and_loads_the_tags(tmp_path, emulator):
    db = tmp_path / "registry_etl.duckdb"
    result = cli("load", "ncp", "--duckdb", str(db), "--pipelines-dir", str(tmp_path / "p"), "--quiet", env=demo_env(emulator))
    assert result.returncode == 0, result.stderr
    assert "ListRegistries 1, ListTags 4" in result.stdout
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute("SELECT registry, repository, tag, digest FROM registry.tags WHERE valid_to IS NULL").fetchall()
    assert {(r[0], r[1], r[2]): r[3] for r in rows} == expected_tags(emulator.inventory)


def test_wrong_secret_exits_auth_and_never_prints_it(tmp_path, emulator):
    env = {**demo_env(emulator), "SOURCES__NCP__SECRET_KEY": WRONG_SECRET}
    # --debug prints the traceback and debug logs too: the secret must be in none of it
    result = cli("--debug", "load", "ncp", "--duckdb", str(tmp_path / "x.duckdb"), "--pipelines-dir", str(tmp_path / "p"), env=env)
    assert result.returncode == 3
    assert WRONG_SECRET not in result.stdout + result.stderr
    error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1
    assert "ListRegistries" in error[0] and "region kr" in error[0] and "secret_key" in error[0]
