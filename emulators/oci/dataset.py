"""The generated inventory turned into what a real OCI registry can hold, and pushed into it.

`emulators.inventory.Inventory` describes repositories, images, platforms, tags and times, but
its blob sizes are megabytes and its blobs have no bytes. A registry checks that every blob a
manifest names exists with the size written there, so `RegistryData` re-derives each inventory
image with small real blobs: a config blob per image carrying the image's `created` time and
platform, and layer blobs from a small shared pool (so 300 manifests need a few hundred uploads,
not thousands). Structure follows the inventory exactly: the same repositories, tags, untagged
images and multi-arch indexes (every second index is written as a Docker manifest list with
Docker v2 children, the others as OCI indexes carrying `org.opencontainers.image.created`).

The derived documents are the expected values of the tests: `expected_images()` gives every
manifest the source must find (tagged manifests and the children of tagged indexes).

`Pusher` uploads with plain HTTP as a registry client does: `POST /v2/<name>/blobs/uploads/`
then `PUT <Location>&digest=` (or a cross-repository mount), then `PUT /v2/<name>/manifests/<ref>`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Dict, Iterable, List, Optional, Set, Tuple
from urllib.parse import quote

import requests

from emulators import inventory as inv

log = logging.getLogger("registry_etl.emulators.oci")

DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
CREATED_ANNOTATION = "org.opencontainers.image.created"
LAYER_POOL = 12  # distinct layer blobs in the whole data set (>= layers per image)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def rfc3339_ns(epoch_ns: int) -> str:
    """An RFC 3339 UTC time with all nine fractional digits, as Go's time.Time marshals."""
    seconds, nanos = divmod(epoch_ns, 10**9)
    stamp = datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{nanos:09d}Z"


def pool_blob(index: int) -> bytes:
    """Layer blob number `index`: a few hundred deterministic bytes."""
    rng = random.Random(f"layer-{index}")
    return f"layer-{index}:".encode() + rng.randbytes(64 + (index * 53) % 700)


@dataclass
class Blob:
    digest: str
    size: int
    media_type: str


@dataclass
class Child:
    digest: str
    media_type: str
    size: int
    os: str
    arch: str
    variant: Optional[str]


@dataclass
class PushedImage:
    """One manifest as pushed: its bytes, and the values the source must load for it."""

    digest: str
    media_type: str
    raw: bytes
    created: Optional[datetime]
    config: Optional[Blob] = None
    layers: List[Blob] = field(default_factory=list)
    children: List[Child] = field(default_factory=list)
    platform: Tuple[Optional[str], Optional[str], Optional[str]] = (None, None, None)

    @property
    def is_index(self) -> bool:
        return self.media_type in (inv.OCI_INDEX, DOCKER_MANIFEST_LIST)

    @property
    def size_bytes(self) -> Optional[int]:
        """Config + layers; None for an index (its children carry their own sizes)."""
        if self.is_index or self.config is None:
            return None
        return self.config.size + sum(layer.size for layer in self.layers)


@dataclass
class PushedRepository:
    name: str
    images: Dict[str, PushedImage] = field(default_factory=dict)  # push order: children first
    tags: Dict[str, str] = field(default_factory=dict)
    deleted: Set[str] = field(default_factory=set)

    def reachable(self) -> Set[str]:
        """Digests a Distribution API client can find: tagged manifests and their children."""
        found: Set[str] = set()
        for digest in set(self.tags.values()):
            found.add(digest)
            found.update(child.digest for child in self.images[digest].children)
        return found


class RegistryData:
    """An `Inventory` (one registry of it) derived into pushable manifests and blobs."""

    def __init__(self, inventory: inv.Inventory, registry: Optional[str] = None) -> None:
        self.inventory = inventory
        self.registry = registry or next(iter(inventory.registries))
        self.blobs: Dict[str, bytes] = {}
        self.repositories: Dict[str, PushedRepository] = {}
        self._digest_of: Dict[Tuple[str, str], str] = {}  # (repo, inventory digest) -> pushed digest
        self._index_count = 0
        for repo in inventory.registries[self.registry].values():
            self._add_repository(repo)

    # ---- deriving
    def _add_repository(self, repo: inv.Repository) -> PushedRepository:
        pushed = self.repositories.setdefault(repo.name, PushedRepository(repo.name))
        children = {c.digest for image in repo.images.values() for c in image.children}
        for image in repo.images.values():
            if image.digest in children or (repo.name, image.digest) in self._digest_of:
                continue
            self._derive(pushed, image)
        for tag, digest in repo.tags.items():
            pushed.tags[tag] = self._digest_of[(repo.name, digest)]
        return pushed

    def _blob(self, data: bytes, media_type: str) -> Blob:
        digest = sha256(data)
        self.blobs[digest] = data
        return Blob(digest, len(data), media_type)

    def _derive(self, repo: PushedRepository, image: inv.Image) -> PushedImage:
        if image.is_index:
            self._index_count += 1
            docker = self._index_count % 2 == 0
            kids = [self._single(repo, child, docker) for child in image.children]
            pushed = self._index(image, kids, docker)
        else:
            pushed = self._single(repo, image, image.media_type == inv.DOCKER_MANIFEST)
        repo.images[pushed.digest] = pushed
        self._digest_of[(repo.name, image.digest)] = pushed.digest
        return pushed

    def _single(self, repo: PushedRepository, image: inv.Image, docker: bool) -> PushedImage:
        os_, arch, variant = image.platform or ("linux", "amd64", None)
        # Docker images carry their time in a config of their own; OCI manifests share one config
        # per platform without `created` and carry the time in the created annotation instead
        # (fewer uploads, and both of the source's ways to find `created_at` are exercised)
        config_doc: Dict[str, object] = {
            "architecture": arch,
            "os": os_,
            **({"variant": variant} if variant else {}),
            "rootfs": {"type": "layers", "diff_ids": []},
        }
        if docker:
            config_doc["created"] = rfc3339_ns(image.created_ns)
            config_doc["config"] = {"Labels": {"generated-from": image.config.digest if image.config else image.digest}}
        config = self._blob(
            json.dumps(config_doc, sort_keys=True).encode(), inv.DOCKER_CONFIG if docker else inv.OCI_CONFIG
        )
        layer_type = inv.DOCKER_LAYER if docker else inv.OCI_LAYER
        used: Set[int] = set()
        layers = []
        for layer in image.layers:
            slot = int(layer.digest[7:15], 16) % LAYER_POOL
            while slot in used:  # a manifest lists each layer once
                slot = (slot + 1) % LAYER_POOL
            used.add(slot)
            layers.append(self._blob(pool_blob(slot), layer_type))
        media_type = inv.DOCKER_MANIFEST if docker else inv.OCI_MANIFEST
        doc: Dict[str, object] = {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": {"mediaType": config.media_type, "size": config.size, "digest": config.digest},
            "layers": [{"mediaType": l.media_type, "size": l.size, "digest": l.digest} for l in layers],
        }
        if not docker:
            doc["annotations"] = {CREATED_ANNOTATION: rfc3339_ns(image.created_ns)}
        raw = json.dumps(doc, indent=3).encode()
        pushed = PushedImage(
            sha256(raw), media_type, raw, image.created, config, layers, platform=(os_, arch, variant)
        )
        if image.platform:  # an index child: stored under its own digest
            repo.images[pushed.digest] = pushed
        return pushed

    def _index(self, image: inv.Image, kids: List[PushedImage], docker: bool) -> PushedImage:
        children = [
            Child(kid.digest, kid.media_type, len(kid.raw), kid.platform[0], kid.platform[1], kid.platform[2])
            for kid in kids
        ]
        media_type = DOCKER_MANIFEST_LIST if docker else inv.OCI_INDEX
        doc: Dict[str, object] = {
            "schemaVersion": 2,
            "mediaType": media_type,
            "manifests": [
                {
                    "mediaType": c.media_type,
                    "size": c.size,
                    "digest": c.digest,
                    "platform": {
                        k: v for k, v in (("architecture", c.arch), ("os", c.os), ("variant", c.variant)) if v
                    },
                }
                for c in children
            ],
        }
        created = None
        if not docker:  # Docker manifest lists have no annotations
            doc["annotations"] = {CREATED_ANNOTATION: rfc3339_ns(image.created_ns)}
            created = image.created
        raw = json.dumps(doc, indent=3).encode()
        return PushedImage(sha256(raw), media_type, raw, created, children=children)

    # ---- expected values
    def expected_images(self) -> Dict[Tuple[str, str], PushedImage]:
        """(repository, digest) -> image, for every manifest reachable through a tag."""
        return {
            (repo.name, digest): repo.images[digest]
            for repo in self.repositories.values()
            for digest in repo.reachable()
        }

    def expected_tags(self) -> Dict[Tuple[str, str], str]:
        return {(repo.name, tag): digest for repo in self.repositories.values() for tag, digest in repo.tags.items()}

    def counts(self) -> Dict[str, int]:
        return {
            "repositories": len(self.repositories),
            "manifests": sum(len(r.images) for r in self.repositories.values()),
            "reachable": len(self.expected_images()),
            "tags": len(self.expected_tags()),
        }

    # ---- mutations (applied to the inventory, the derived data and the registry)
    def move_tags(self, pusher: "Pusher", count: int) -> List[Tuple[str, str, str, str]]:
        moves = []
        for repo, tag, _old, new in self.inventory.move_tags(count):
            if repo.registry != self.registry:
                continue
            pushed = self.repositories[repo.name]
            old_digest, new_digest = pushed.tags[tag], self._digest_of[(repo.name, new)]
            pushed.tags[tag] = new_digest
            image = pushed.images[new_digest]
            pusher.put_manifest(repo.name, tag, image.raw, image.media_type)
            moves.append((repo.name, tag, old_digest, new_digest))
        return moves

    def delete_manifest(self, pusher: "Pusher", repository: str, digest: str) -> List[str]:
        """DELETE by digest: the registry drops every tag on it; returns those tags."""
        pushed = self.repositories[repository]
        tags = sorted(t for t, d in pushed.tags.items() if d == digest)
        pusher.delete_manifest(repository, digest)
        for tag in tags:
            del pushed.tags[tag]
        pushed.deleted.add(digest)
        return tags

    def push_images(self, pusher: "Pusher", count: int) -> List[Tuple[str, PushedImage]]:
        pushed_now = []
        for repo, image in self.inventory.push_images(count):
            if repo.registry != self.registry:
                continue
            target = self.repositories[repo.name]
            before = set(target.images)
            new = self._derive(target, image)
            for tag in repo.tags_of(image.digest):
                target.tags[tag] = new.digest
            pusher.push_images(target, [d for d in target.images if d not in before], self.blobs)
            pushed_now.append((repo.name, new))
        return pushed_now


class Pusher:
    """Plain-HTTP uploads into a Distribution registry (no Docker needed)."""

    def __init__(self, url: str, auth: Optional[object] = None, workers: int = 8) -> None:
        """`auth`: (user, password) for basic auth, or a requests AuthBase (bearer tokens)."""
        self.url = url.rstrip("/")
        self.session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=workers, pool_maxsize=workers * 2)
        self.session.mount("http://", adapter)
        self.session.auth = auth
        self.workers = workers
        self._lock = threading.Lock()
        self._home: Dict[str, str] = {}  # blob digest -> a repository that holds it
        self._present: Set[Tuple[str, str]] = set()

    def _check(self, response: requests.Response, what: str) -> requests.Response:
        if response.status_code >= 300:
            raise RuntimeError(f"push {what}: HTTP {response.status_code} {response.text[:300]}")
        return response

    def ensure_blob(self, repository: str, digest: str, data: bytes) -> None:
        with self._lock:
            if (repository, digest) in self._present:
                return
            home = self._home.get(digest)
        base = f"{self.url}/v2/{repository}/blobs/uploads/"
        if home:
            response = self.session.post(base, params={"mount": digest, "from": home})
        else:
            response = self.session.post(base)
        if response.status_code != 201:  # no mount (or not yet there): finish a monolithic upload
            self._check(response, f"blob upload start {repository}")
            location = response.headers["Location"]
            if location.startswith("/"):
                location = self.url + location
            sep = "&" if "?" in location else "?"
            self._check(
                self.session.put(
                    f"{location}{sep}digest={quote(digest)}",
                    data=data,
                    headers={"Content-Type": "application/octet-stream"},
                ),
                f"blob {digest} into {repository}",
            )
        with self._lock:
            self._present.add((repository, digest))
            self._home.setdefault(digest, repository)

    def put_manifest(self, repository: str, reference: str, raw: bytes, media_type: str) -> None:
        self._check(
            self.session.put(
                f"{self.url}/v2/{repository}/manifests/{reference}", data=raw, headers={"Content-Type": media_type}
            ),
            f"manifest {repository}:{reference}",
        )

    def delete_manifest(self, repository: str, digest: str) -> None:
        self._check(self.session.delete(f"{self.url}/v2/{repository}/manifests/{digest}"), f"delete {repository}@{digest}")

    def push_images(self, repo: PushedRepository, digests: Iterable[str], blobs: Dict[str, bytes]) -> None:
        """Push manifests (children before their index) with their blobs, then their tags."""
        digests = list(digests)
        for digest in digests:
            image = repo.images[digest]
            for blob in ([image.config] if image.config else []) + image.layers:
                self.ensure_blob(repo.name, blob.digest, blobs[blob.digest])
        tags_of: Dict[str, List[str]] = {}
        for tag, digest in sorted(repo.tags.items()):
            tags_of.setdefault(digest, []).append(tag)
        for digest in digests:
            image = repo.images[digest]
            refs = tags_of.get(digest) or [digest]
            for ref in refs:
                self.put_manifest(repo.name, ref, image.raw, image.media_type)

    def push_all(self, data: RegistryData) -> None:
        with ThreadPoolExecutor(self.workers) as pool:
            futures = [
                pool.submit(self.push_images, repo, list(repo.images), data.blobs)
                for repo in data.repositories.values()
            ]
            for future in futures:
                future.result()
