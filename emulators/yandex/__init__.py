"""Yandex Cloud Container Registry emulator (see `server.py` for the API it speaks) and its demo.

`start_demo()` starts it on loopback with a small inventory in two folders, a fresh
service-account key pair (generated at start, never stored) and returns the environment
variables that point `sources.yandex` at it with that key.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Dict, Optional, Tuple

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ..base import Faults
from ..inventory import Inventory
from .server import API_PREFIX, IAM_PATH, CODES, YandexEmulator, rfc3339_ns, stable_id

__all__ = [
    "YandexEmulator",
    "API_PREFIX",
    "IAM_PATH",
    "CODES",
    "rfc3339_ns",
    "registry_ids",
    "folder_ids",
    "make_authorized_key",
    "start_demo",
]


def registry_ids(count: int, seed: str = "demo") -> Tuple[str, ...]:
    """`count` Yandex-looking registry ids (`crp…`, 20 characters), stable for a seed."""
    return tuple(stable_id("crp", "registry", seed, str(i)) for i in range(count))


def folder_ids(count: int, seed: str = "demo") -> Tuple[str, ...]:
    return tuple(stable_id("b1g", "folder", seed, str(i)) for i in range(count))


def make_authorized_key(
    key_id: Optional[str] = None, service_account_id: Optional[str] = None, bits: int = 2048
) -> Tuple[Dict[str, Any], str]:
    """A service-account authorized key as `yc iam key create` writes it, and its public PEM."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    key = {
        "id": key_id or stable_id("aje", "key", public_pem),
        "service_account_id": service_account_id or stable_id("aje", "sa", public_pem),
        "created_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "key_algorithm": "RSA_2048",
        "public_key": public_pem,
        "private_key": private_pem,
    }
    return key, public_pem


def start_demo(
    registries: int = 3,
    repositories: int = 12,
    images: int = 120,
    seed: int = 7,
    faults: Optional[Faults] = None,
    port: int = 0,
    inventory: Optional[Inventory] = None,
    **_: Any,
) -> Tuple[YandexEmulator, Dict[str, str]]:
    """Start the emulator with a demo inventory; returns it and the env vars for the source.

    Args:
        registries: Registries of the generated demo inventory (ignored with `inventory`).
        repositories: Repositories of the demo inventory (ignored with `inventory`).
        images: Images of the demo inventory (ignored with `inventory`).
        seed: Seed of the demo inventory (ignored with `inventory`).
        faults: Faults to inject.
        port: Port to listen on (0: any free one).
        inventory: A generated inventory to serve instead of the demo one; its registry names
            are the registry ids (`registry_ids(n)` makes Yandex-looking ones).
    """
    if inventory is None:
        inventory = Inventory(seed=seed, registries=registry_ids(registries), repositories=repositories, images=images)
    ids = tuple(inventory.registries)
    folders = folder_ids(2)
    # the first registry in one folder, the others in the second: a run covers several folders
    folder_of = {registry_id: folders[0 if i == 0 else 1] for i, registry_id in enumerate(ids)}
    emulator = YandexEmulator(inventory, folders=folder_of, faults=faults)
    key, public_pem = make_authorized_key()
    emulator.register_service_account_key(key["id"], key["service_account_id"], public_pem)
    emulator.start(port=port)
    env = {
        "SOURCES__YANDEX__FOLDER_ID": json.dumps(list(folders)),
        "SOURCES__YANDEX__BASE_URL": emulator.url + API_PREFIX,
        "SOURCES__YANDEX__IAM_URL": emulator.url + IAM_PATH,
        "SOURCES__YANDEX__SERVICE_ACCOUNT_KEY": json.dumps(key),
    }
    return emulator, env
