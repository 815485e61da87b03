"""Huawei Cloud SWR emulator: the server (`server.py`), the demo data set and `start_demo()`.

The demo inventory has three namespaces, 60 repositories and exactly 2,000 tags; one of the
repositories is `namespace/busybox`, holding the example record of the SWR documentation
(seed 004: tag `latest`, size 1304902, two layers) byte for byte.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Dict, Optional, Tuple

from emulators.base import Faults
from emulators.inventory import DOCKER_CONFIG, DOCKER_LAYER, DOCKER_MANIFEST, Blob, Image, Inventory, Repository

from .server import SwrEmulator, rfc3339

__all__ = [
    "SwrEmulator",
    "rfc3339",
    "demo_inventory",
    "add_seed_repository",
    "start_demo",
    "DEMO_ACCESS_KEY",
    "DEMO_SECRET_KEY",
    "DEMO_PROJECT_ID",
    "DEMO_TOKEN",
    "SEED_NAMESPACE",
    "SEED_REPOSITORY",
    "SEED_DIGEST",
    "SEED_SIZE",
]

DEMO_NAMESPACES = ("namespace", "team-alpha", "team-beta")
DEMO_REGION = "cn-north-4"
DEMO_ACCESS_KEY = "DEMOAKSWR0000000001"
DEMO_SECRET_KEY = "demo-swr-secret-key-0000000000000000000001"
DEMO_PROJECT_ID = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
DEMO_TOKEN = "MIIdemo-swr-iam-token-000000000000000000"

# seed 004 (Querying the List of Image Repository Tags), the response example
SEED_NAMESPACE = "namespace"
SEED_REPOSITORY = "busybox"
SEED_TAG = "latest"
SEED_DIGEST = "sha256:57b605845a6367c34bfb6ea6477f16852f59aa1861a2b51d10ab77ae0a1dc9c3"
SEED_SIZE = 1304902
SEED_CREATED = "2018-07-06T06:18:55Z"
SEED_MANIFEST = (
    '{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",'
    '"config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":1862,'
    '"digest":"sha256:741f24a795d6d93d7c6edd11780d63c13e16c39615dd9d223378a57a836f2ee6"},'
    '"layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":1292800,'
    '"digest":"sha256:8ac8bfaff55af948c796026ee867448c5b5b5d9dd3549f4006d9759b25d4a893"},'
    '{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":10240,'
    '"digest":"sha256:77ddbf3a9fe11e81761a0f9df43a28e3e6f29bbb53c0c8cf71cd7efa69729aed"}]}'
)


def add_seed_repository(inventory: Inventory, namespace: str = SEED_NAMESPACE) -> Repository:
    """Add `busybox:latest` exactly as the SWR documentation's example answer shows it.

    Its digest is the documented one (not the sha256 of the manifest text: the documentation's
    example was not taken from one real push).
    """
    doc = json.loads(SEED_MANIFEST)
    created_ns = int(datetime.fromisoformat(SEED_CREATED.replace("Z", "+00:00")).timestamp()) * 10**9
    image = Image(
        digest=SEED_DIGEST,
        media_type=DOCKER_MANIFEST,
        raw=SEED_MANIFEST.encode(),
        created_ns=created_ns,
        config=Blob(doc["config"]["digest"], doc["config"]["size"], DOCKER_CONFIG),
        layers=[Blob(layer["digest"], layer["size"], DOCKER_LAYER) for layer in doc["layers"]],
    )
    repo = Repository(namespace, SEED_REPOSITORY, created_ns, description="SWR documentation example (seed 004)")
    repo.images[image.digest] = image
    repo.tags[SEED_TAG] = image.digest
    inventory.registries.setdefault(namespace, {})[SEED_REPOSITORY] = repo
    return repo


def demo_inventory(
    seed: int = 4,
    namespaces: Tuple[str, ...] = DEMO_NAMESPACES,
    repositories: int = 60,
    tags: int = 2000,
    with_seed_record: bool = True,
) -> Inventory:
    """A deterministic inventory with exactly `repositories` repositories and `tags` tags.

    With `with_seed_record`, one of the repositories (and one of the tags) is the seed 004
    example in the first namespace.
    """
    extra = 1 if with_seed_record else 0
    generated_tags = tags - extra
    # two tags per tagged image; every 7th single-platform image is untagged: overshoot, then trim
    images = generated_tags // 2 + generated_tags // 10 + 10
    inventory = Inventory(
        seed=seed, registries=namespaces, repositories=repositories - extra, images=images
    )
    excess = inventory.counts()["tags"] - generated_tags
    if excess < 0:
        raise ValueError(f"the generated inventory has {-excess} tags too few")
    inventory.delete_tags(excess)
    if with_seed_record:
        add_seed_repository(inventory, namespaces[0])
    return inventory


def start_demo(
    port: int = 0,
    faults: Optional[Faults] = None,
    inventory: Optional[Inventory] = None,
    **kwargs: Any,
) -> Tuple[SwrEmulator, Dict[str, str]]:
    """Start the emulator with the demo inventory; returns it and the env vars for the source."""
    emulator = SwrEmulator(
        inventory or demo_inventory(),
        region=DEMO_REGION,
        credentials={DEMO_ACCESS_KEY: DEMO_SECRET_KEY},
        tokens={DEMO_TOKEN: None},
        faults=faults,
    )
    emulator.start(port=port)
    env = {
        "SOURCES__SWR__BASE_URL": emulator.url,
        "SOURCES__SWR__REGION": DEMO_REGION,
        "SOURCES__SWR__ACCESS_KEY": DEMO_ACCESS_KEY,
        "SOURCES__SWR__SECRET_KEY": DEMO_SECRET_KEY,
        "SOURCES__SWR__PROJECT_ID": DEMO_PROJECT_ID,
    }
    return emulator, env
