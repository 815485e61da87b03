"""`registry-etl load yandex` end to end, in a subprocess, against the emulator."""

from __future__ import annotations

import json
import time

import duckdb
import pytest

from emulators.yandex import API_PREFIX, IAM_PATH, YandexEmulator, folder_ids, registry_ids
from emulators.inventory import Inventory
from tests.cli.test_cli import cli
from tests.yandex.conftest import authorized_key_pair

EXPIRED_TOKEN = "t1.expired-static-token-5551234"


@pytest.fixture
def emulator():
    ids = registry_ids(2, "cli")
    emu = YandexEmulator(
        Inventory(seed=9, registries=ids, repositories=6, images=80),
        folders={ids[0]: folder_ids(1, "cli")[0], ids[1]: folder_ids(1, "cli")[0]},
    )
    key = json.loads(authorized_key_pair()[0])
    emu.register_service_account_key(key["id"], key["service_account_id"], authorized_key_pair()[1])
    emu.add_iam_token(EXPIRED_TOKEN, expires_at=time.time() - 60)
    emu.start()
    yield emu
    emu.stop()


def base_env(emu):
    return {
        "SOURCES__YANDEX__FOLDER_ID": folder_ids(1, "cli")[0],
        "SOURCES__YANDEX__BASE_URL": emu.url + API_PREFIX,
        "SOURCES__YANDEX__IAM_URL": emu.url + IAM_PATH,
    }


def test_load_yandex_with_a_key_file(tmp_path, emulator):
    key_file = tmp_path / "key.json"
    key_file.write_text(authorized_key_pair()[0])
    env = {**base_env(emulator), "SOURCES__YANDEX__SERVICE_ACCOUNT_KEY_FILE": str(key_file)}
    db = tmp_path / "registry_etl.duckdb"
    result = cli("load", "yandex", "--duckdb", str(db), "--pipelines-dir", str(tmp_path / "p"), "--quiet", env=env)
    assert result.returncode == 0, result.stderr
    expected = sum(len(r.images) for r in emulator.inventory.repositories())
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM registry.images WHERE provider = 'yandex'").fetchone()[0] == expected
        assert con.execute("SELECT count(*) FROM registry.yandex_registries").fetchone()[0] == 2
    assert f"{expected:,} rows" in result.stdout
    private_line = json.loads(authorized_key_pair()[0])["private_key"].splitlines()[1]
    assert private_line not in result.stdout + result.stderr


def test_expired_token_exits_auth_naming_folder_and_call(tmp_path, emulator):
    env = {**base_env(emulator), "SOURCES__YANDEX__IAM_TOKEN": EXPIRED_TOKEN}
    result = cli("load", "yandex", "--duckdb", str(tmp_path / "x.duckdb"), "--pipelines-dir", str(tmp_path / "p"), "--quiet", env=env)
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = [l for l in result.stderr.splitlines() if l.startswith("error:")]
    assert "Registry.list" in line and folder_ids(1, "cli")[0] in line and "expired" in line
    assert EXPIRED_TOKEN not in result.stderr + result.stdout


def test_missing_credentials_exit_config(tmp_path, emulator):
    result = cli("load", "yandex", "--duckdb", str(tmp_path / "x.duckdb"), "--pipelines-dir", str(tmp_path / "p"), "--quiet", env=base_env(emulator))
    assert result.returncode == 2
    assert "service_account_key_file" in result.stderr
