"""A generated registry inventory that every emulator serves in its own API's shape.

Deterministic from a seed and a size: repositories (some with `/` in the name), images with a
config and layers (base layers shared across repositories), multi-arch indexes whose children
are untagged manifests, several tags per image, untagged images. Manifests are real JSON
documents and digests are the sha256 of their bytes, as a registry computes them.

Mutations (`move_tags`, `delete_tags`, `push_images`) change it as users would between two
loads, so tests can check the history a rerun records.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Dict, Iterator, List, Optional, Tuple

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"

# every generated time lies in the year before this instant
EPOCH_NS = int(datetime(2026, 11, 1, tzinfo=timezone.utc).timestamp()) * 10**9
YEAR_NS = 365 * 24 * 3600 * 10**9
PLATFORMS = (("linux", "amd64", None), ("linux", "arm64", "v8"), ("linux", "arm", "v7"))


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Blob:
    digest: str
    size: int
    media_type: str


@dataclass
class Image:
    """One manifest: a single-platform image (config + layers) or an index (children)."""

    digest: str
    media_type: str
    raw: bytes  # the manifest bytes; digest = sha256(raw)
    created_ns: int  # push time, epoch nanoseconds (nanosecond digits are real)
    config: Optional[Blob] = None
    layers: List[Blob] = field(default_factory=list)
    children: List["Image"] = field(default_factory=list)
    platform: Optional[Tuple[str, str, Optional[str]]] = None
    pull_count: int = 0
    last_pulled_ns: Optional[int] = None

    @property
    def is_index(self) -> bool:
        return bool(self.children)

    @property
    def content_size(self) -> int:
        """Config + layers; for an index the largest child (what ECR reports)."""
        if self.is_index:
            return max(child.content_size for child in self.children)
        return (self.config.size if self.config else 0) + sum(layer.size for layer in self.layers)

    @property
    def created(self) -> datetime:
        return datetime.fromtimestamp(self.created_ns // 10**9, tz=timezone.utc).replace(
            microsecond=(self.created_ns % 10**9) // 1000
        )

    def manifest(self) -> dict:
        return json.loads(self.raw)


@dataclass
class Repository:
    registry: str
    name: str
    created_ns: int
    description: str = ""
    images: Dict[str, Image] = field(default_factory=dict)  # top-level and child manifests by digest
    tags: Dict[str, str] = field(default_factory=dict)  # tag -> digest

    def top_level(self) -> List[Image]:
        """Images that are not children of an index in this repository."""
        children = {c.digest for image in self.images.values() for c in image.children}
        return [image for digest, image in self.images.items() if digest not in children]

    def tags_of(self, digest: str) -> List[str]:
        return sorted(tag for tag, d in self.tags.items() if d == digest)

    @property
    def updated_ns(self) -> int:
        return max([self.created_ns] + [image.created_ns for image in self.images.values()])

    @property
    def pull_count(self) -> int:
        return sum(image.pull_count for image in self.images.values())


class Inventory:
    """Registries -> repositories -> images and tags, generated from (seed, size)."""

    def __init__(
        self,
        seed: int = 1,
        registries: Tuple[str, ...] = ("registry-1",),
        repositories: int = 10,
        images: int = 100,
        layers_per_image: int = 5,
        tags_per_image: int = 2,
        multiarch_every: int = 10,
        untagged_every: int = 7,
        oci_every: int = 3,
    ) -> None:
        self.rng = random.Random(seed)
        self.seed = seed
        self.layers_per_image = layers_per_image
        self.tags_per_image = tags_per_image
        self.multiarch_every = multiarch_every
        self.untagged_every = untagged_every
        self.oci_every = oci_every
        self.registries: Dict[str, Dict[str, Repository]] = {name: {} for name in registries}
        self._image_counter = 0
        self._tag_counter = 0
        # a pool of base layers: images share their first layers, across repositories
        self._base_layers = [self._layer(DOCKER_LAYER, big=True) for _ in range(max(3, repositories // 5))]
        for index in range(repositories):
            registry = registries[index % len(registries)]
            name = self._repository_name(index)
            created = EPOCH_NS - YEAR_NS - self.rng.randrange(YEAR_NS // 4)
            self.registries[registry][name] = Repository(
                registry, name, created, description=f"generated repository {index}"
            )
        repos = list(self.repositories())
        for index in range(images):
            self._push(repos[index % len(repos)])

    # ---- reading
    def repositories(self) -> Iterator[Repository]:
        for repos in self.registries.values():
            yield from repos.values()

    def repository(self, registry: str, name: str) -> Repository:
        return self.registries[registry][name]

    def counts(self) -> Dict[str, int]:
        repos = list(self.repositories())
        return {
            "repositories": len(repos),
            "images": sum(len(r.images) for r in repos),
            "tags": sum(len(r.tags) for r in repos),
        }

    # ---- generating
    def _repository_name(self, index: int) -> str:
        if index % 3 == 0:
            return f"team-{index % 7}/service-{index}"
        if index % 3 == 1:
            return f"app-{index}"
        return f"platform/tools/tool-{index}"

    def _layer(self, media_type: str, big: bool = False) -> Blob:
        data = self.rng.getrandbits(128).to_bytes(16, "big")
        size = self.rng.randrange(5_000_000, 80_000_000) if big else self.rng.randrange(1_000, 20_000_000)
        return Blob(sha256(data), size, media_type)

    def _next_time(self) -> int:
        return EPOCH_NS - YEAR_NS + self.rng.randrange(YEAR_NS)

    def _single(self, oci: bool, created_ns: int, platform=None) -> Image:
        layer_type = OCI_LAYER if oci else DOCKER_LAYER
        config = Blob(
            sha256(self.rng.getrandbits(128).to_bytes(16, "big")),
            self.rng.randrange(1_000, 12_000),
            OCI_CONFIG if oci else DOCKER_CONFIG,
        )
        layers = [self.rng.choice(self._base_layers)]
        layers = [Blob(layers[0].digest, layers[0].size, layer_type)]
        layers += [self._layer(layer_type) for _ in range(self.layers_per_image - 1)]
        media_type = OCI_MANIFEST if oci else DOCKER_MANIFEST
        doc = {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": {"mediaType": config.media_type, "size": config.size, "digest": config.digest},
            "layers": [{"mediaType": l.media_type, "size": l.size, "digest": l.digest} for l in layers],
        }
        raw = json.dumps(doc, indent=3).encode()
        return Image(sha256(raw), media_type, raw, created_ns, config, layers, platform=platform)

    def _index(self, created_ns: int) -> Image:
        count = 2 + self.rng.randrange(2)
        children = [self._single(True, created_ns, PLATFORMS[i]) for i in range(count)]
        doc = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": child.media_type,
                    "size": len(child.raw),
                    "digest": child.digest,
                    "platform": {
                        k: v
                        for k, v in (("architecture", child.platform[1]), ("os", child.platform[0]), ("variant", child.platform[2]))
                        if v
                    },
                }
                for child in children
            ],
        }
        raw = json.dumps(doc, indent=3).encode()
        return Image(sha256(raw), OCI_INDEX, raw, created_ns, children=children)

    def _push(self, repo: Repository, tags: Optional[List[str]] = None) -> Image:
        self._image_counter += 1
        n = self._image_counter
        created = self._next_time()
        if self.multiarch_every and n % self.multiarch_every == 0:
            image = self._index(created)
        else:
            image = self._single(bool(self.oci_every) and n % self.oci_every == 0, created)
        image.pull_count = self.rng.randrange(0, 500)
        if image.pull_count:
            image.last_pulled_ns = created + self.rng.randrange(EPOCH_NS - created)
        repo.images[image.digest] = image
        for child in image.children:
            repo.images[child.digest] = child
        if tags is None:
            untagged = self.untagged_every and n % self.untagged_every == 0 and not image.is_index
            tags = [] if untagged else [self._new_tag() for _ in range(self.tags_per_image)]
        for tag in tags:
            repo.tags[tag] = image.digest
        return image

    def _new_tag(self) -> str:
        self._tag_counter += 1
        return f"v{self._tag_counter // 100}.{self._tag_counter % 100}"

    # ---- mutating
    def all_tags(self) -> List[Tuple[Repository, str]]:
        return [(repo, tag) for repo in self.repositories() for tag in sorted(repo.tags)]

    def move_tags(self, count: int) -> List[Tuple[Repository, str, str, str]]:
        """Point `count` tags at another top-level image of their repository; returns the moves."""
        moves = []
        candidates = [(r, t) for r, t in self.all_tags() if len(r.top_level()) > 1]
        for repo, tag in self.rng.sample(candidates, count):
            old = repo.tags[tag]
            choices = [image.digest for image in repo.top_level() if image.digest != old]
            new = self.rng.choice(sorted(choices))
            repo.tags[tag] = new
            moves.append((repo, tag, old, new))
        return moves

    def delete_tags(self, count: int) -> List[Tuple[Repository, str, str]]:
        deleted = []
        for repo, tag in self.rng.sample(self.all_tags(), count):
            deleted.append((repo, tag, repo.tags.pop(tag)))
        return deleted

    def push_images(self, count: int) -> List[Tuple[Repository, Image]]:
        repos = sorted(self.repositories(), key=lambda r: (r.registry, r.name))
        pushed = []
        for _ in range(count):
            repo = self.rng.choice(repos)
            pushed.append((repo, self._push(repo)))
        return pushed
