"""Fixtures: a Yandex emulator over an inventory, with the source pointed at it by env vars."""

from __future__ import annotations

import functools
import json
from collections import Counter
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

from emulators.base import Faults
from emulators.inventory import Inventory
from emulators.yandex import API_PREFIX, IAM_PATH, YandexEmulator, folder_ids, make_authorized_key, registry_ids
from pipelines.load import environment, run_load

# test credentials: the tests grep logs, errors and the DuckDB file for these
IAM_TOKEN = "t1.static-test-iam-token-0123456789abcdef"
OAUTH_TOKEN = "y0_oauth-test-token-0123456789abcdef"
CREDENTIAL_VARS = (
    "SOURCES__YANDEX__IAM_TOKEN",
    "SOURCES__YANDEX__SERVICE_ACCOUNT_KEY",
    "SOURCES__YANDEX__SERVICE_ACCOUNT_KEY_FILE",
    "SOURCES__YANDEX__OAUTH_TOKEN",
    "SOURCES__YANDEX__REGISTRY_IDS",
    "SOURCES__YANDEX__REPOSITORIES",
)


@functools.lru_cache(maxsize=None)
def authorized_key_pair(name: str = "main") -> Tuple[str, str]:
    """An authorized key JSON and its public PEM, generated once per test session."""
    key, public_pem = make_authorized_key()
    return json.dumps(key), public_pem


def registry_of(registry_id: str) -> str:
    return f"cr.yandex/{registry_id}"


def inventory(registries: int = 2, repositories: int = 6, images: int = 60, seed: int = 1, **kwargs: Any) -> Inventory:
    return Inventory(seed=seed, registries=registry_ids(registries, seed=str(seed)), repositories=repositories, images=images, **kwargs)


def load(pipeline, **options):
    counter: Counter = Counter()
    summary = run_load(pipeline, ["yandex"], source_options={"yandex": {"request_counter": counter, **options}})
    return summary, counter


@pytest.fixture
def yandex_env(tmp_path, monkeypatch) -> Iterator[Any]:
    """`start(inventory, auth="key"|"key_file"|"iam"|"oauth", faults=None, folders=1, **emulator kwargs)`."""
    started: List[YandexEmulator] = []
    contexts: List[Any] = []
    for name in CREDENTIAL_VARS:
        monkeypatch.delenv(name, raising=False)

    def start(inv: Inventory, auth: str = "key", faults: Optional[Faults] = None, folders: int = 1, **kwargs: Any) -> YandexEmulator:
        ids = list(inv.registries)
        folder_list = folder_ids(folders)
        folder_of = {registry_id: folder_list[i % folders] for i, registry_id in enumerate(ids)}
        emulator = YandexEmulator(inv, folders=folder_of, faults=faults, **kwargs)
        key_json, public_pem = authorized_key_pair()
        key = json.loads(key_json)
        emulator.register_service_account_key(key["id"], key["service_account_id"], public_pem)
        emulator.start()
        started.append(emulator)
        env: Dict[str, str] = {
            "SOURCES__YANDEX__FOLDER_ID": json.dumps(list(folder_list)),
            "SOURCES__YANDEX__BASE_URL": emulator.url + API_PREFIX,
            "SOURCES__YANDEX__IAM_URL": emulator.url + IAM_PATH,
        }
        if auth == "key":
            env["SOURCES__YANDEX__SERVICE_ACCOUNT_KEY"] = key_json
        elif auth == "key_file":
            path = tmp_path / "authorized_key.json"
            path.write_text(key_json)
            env["SOURCES__YANDEX__SERVICE_ACCOUNT_KEY_FILE"] = str(path)
        elif auth == "iam":
            emulator.add_iam_token(IAM_TOKEN)
            env["SOURCES__YANDEX__IAM_TOKEN"] = IAM_TOKEN
        elif auth == "oauth":
            emulator.oauth_tokens.add(OAUTH_TOKEN)
            env["SOURCES__YANDEX__OAUTH_TOKEN"] = OAUTH_TOKEN
        else:
            raise ValueError(auth)
        ctx = environment(env)
        ctx.__enter__()
        contexts.append(ctx)
        return emulator

    yield start
    for ctx in reversed(contexts):
        ctx.__exit__(None, None, None)
    for emulator in started:
        emulator.stop()
