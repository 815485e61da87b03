"""A REAL registry serving a generated inventory, behind a `CountingProxy` that tests can bend.

The reliability suite (tests/reliability) treats every source alike: it builds an `Inventory`,
starts the source's emulator over it, changes the inventory between loads (tags moved and
deleted, images pushed), injects faults, bends answers (`corrupt()`), holds a call (`hold()`)
and compares what landed with the inventory. For the OCI source the registry is Debian's
`docker-registry` (CNCF distribution), so:

- `OciInventory` generates images whose blobs have bytes (small ones): the inventory's manifests
  are pushed as they are, and the digests the registry serves ARE the inventory's digests.
- `ServedRegistry` is the proxy plus the registry process it fronts. Before it forwards a call it
  brings the registry up to date with the inventory (`sync()`): new images are pushed, moved
  tags re-put, and a deleted tag, which the registry cannot delete on its own, is removed by
  deleting its manifest by digest and putting back the other tags on it.
- Names the registry refuses (the distribution grammar: lower-case components, tags of
  `[\\w][\\w.-]*`) are stored under a safe alias (`odd-<hash>`) and translated back in every
  answer and request, so the client sees, and must encode, the odd names of the inventory.
- Storage is a directory per instance, copied from a template pushed once per inventory state
  (`start_served`): a test that starts the registry over an inventory it has seen before pays
  for a copy (~50 ms) and a process start (~0.1 s), not for the push (~2 s).
- `require_basic()` / `require_token()` restart the registry with htpasswd or bearer-token auth
  on the same storage (the secrets test's credential variants); `reject_credentials()` makes the
  credentials in use wrong from then on.
"""

from __future__ import annotations

import atexit
import base64
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, List, Optional, Set, Tuple
from urllib.parse import quote, unquote

from emulators import inventory as inv

from emulators.base import Faults, Request, Response

from . import CountingProxy
from .dataset import Pusher, rfc3339_ns, sha256
from .registry import RegistryProcess
from .token import TokenServer

log = logging.getLogger("registry_etl.emulators.oci")

# the distribution spec's grammar (reference/regexp.go)
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*"
_NAME = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$", re.ASCII)
LAYER_POOL = 16  # distinct non-base layer blobs of an inventory
_PATH = re.compile(r"^/v2/(.+)/(tags/list|manifests/[^/]+|blobs/[^/]+)$")


def upstream_name(name: str) -> str:
    """The name the registry stores a repository under: itself, or `odd/<hash>` if refused."""
    if _NAME.match(name) and len(name) <= 255:
        return name
    return "odd/" + hashlib.sha256(name.encode()).hexdigest()[:16]


def upstream_tag(tag: str) -> str:
    if _TAG.match(tag):
        return tag
    return "odd-" + hashlib.sha256(tag.encode()).hexdigest()[:16]


class OciInventory(inv.Inventory):
    """An `Inventory` a real registry can hold: every blob has bytes (a few dozen), and every
    image's config is a real image config carrying its `created` time and platform."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.blob_data: Dict[str, bytes] = {}
        self._layer_pool: List[inv.Blob] = []
        super().__init__(*args, **kwargs)

    def _keep(self, data: bytes, media_type: str) -> inv.Blob:
        blob = inv.Blob(sha256(data), len(data), media_type)
        self.blob_data[blob.digest] = data
        return blob

    def _layer(self, media_type: str, big: bool = False) -> inv.Blob:
        seed = self.rng.getrandbits(128).to_bytes(16, "big")
        return self._keep(b"layer:" + seed * (4 if big else 1), media_type)

    def _single(self, oci: bool, created_ns: int, platform=None) -> inv.Image:
        os_, arch, variant = platform or ("linux", "amd64", None)
        config_doc: Dict[str, Any] = {
            "architecture": arch,
            "os": os_,
            **({"variant": variant} if variant else {}),
            "created": rfc3339_ns(created_ns),
            "config": {"Labels": {"generated": str(self.rng.getrandbits(64))}},
            "rootfs": {"type": "layers", "diff_ids": []},
        }
        config = self._keep(json.dumps(config_doc, sort_keys=True).encode(), inv.OCI_CONFIG if oci else inv.DOCKER_CONFIG)
        layer_type = inv.OCI_LAYER if oci else inv.DOCKER_LAYER
        if not self._layer_pool:  # layers come from a small pool: pushing mounts them, mostly
            self._layer_pool = [self._layer(inv.DOCKER_LAYER) for _ in range(LAYER_POOL)]
        base = self.rng.choice(self._base_layers)
        picked = [base] + self.rng.sample(self._layer_pool, self.layers_per_image - 1)
        layers = [inv.Blob(layer.digest, layer.size, layer_type) for layer in picked]
        media_type = inv.OCI_MANIFEST if oci else inv.DOCKER_MANIFEST
        doc = {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": {"mediaType": config.media_type, "size": config.size, "digest": config.digest},
            "layers": [{"mediaType": l.media_type, "size": l.size, "digest": l.digest} for l in layers],
        }
        raw = json.dumps(doc, indent=3).encode()
        return inv.Image(sha256(raw), media_type, raw, created_ns, config, layers, platform=platform)


def _state(inventory: OciInventory, registry: str) -> Dict[str, Tuple[List[str], Dict[str, str]]]:
    """repository -> (image digests in order, tag -> digest): what the registry must hold."""
    return {repo.name: (list(repo.images), dict(repo.tags)) for repo in inventory.registries[registry].values()}


def fingerprint(inventory: OciInventory, registry: str) -> str:
    return hashlib.sha256(json.dumps(_state(inventory, registry), sort_keys=True).encode()).hexdigest()[:24]


class ServedRegistry(CountingProxy):
    """The proxy in front of a registry process that holds `inventory` (see the module doc)."""

    name = "oci-registry"
    poll_interval = 0.02  # tests start dozens of these: stop() should not wait 0.5 s each

    def __init__(self, inventory: OciInventory, registry: str, workdir: Path, faults: Optional[Faults] = None) -> None:
        self.inventory = inventory
        self.registry = registry
        self.workdir = workdir
        self.process = RegistryProcess(str(workdir), in_memory=False)
        super().__init__("http://127.0.0.1:0", faults)
        self.token_server: Optional[TokenServer] = None
        self._auth: Optional[Tuple[str, str]] = None
        self._sync_lock = threading.RLock()
        self._pushed: Dict[str, Set[str]] = {}  # repository -> digests in the registry (blobs linked)
        self._tags: Dict[str, Dict[str, str]] = {}  # repository -> tag -> digest, as in the registry
        self._seen = ""
        self._names: Dict[str, str] = {}  # upstream -> inventory name, for answers
        self._tag_names: Dict[str, str] = {}

    # ---- the registry process
    def start_registry(self, **auth: Any) -> None:
        if self.process.process is not None:
            self.process.stop()
        self.process = RegistryProcess(str(self.workdir), in_memory=False, **auth)
        self.process.start()
        self.upstream = self.process.url

    def stop(self) -> None:
        super().stop()
        self.process.stop()
        if self.token_server is not None:
            self.token_server.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _pusher(self) -> Pusher:
        if self.token_server is not None:
            raise RuntimeError("the served registry cannot change its data while it requires bearer tokens")
        return Pusher(self.upstream, auth=self._auth)

    # ---- credentials (the secrets test)
    def require_basic(self, users: Dict[str, str]) -> None:
        """Restart the registry with htpasswd basic auth for `users` (same data)."""
        self._auth = next(iter(users.items()))
        self.start_registry(htpasswd=users)

    def require_token(self, users: Dict[str, str], issued: Optional[List[str]] = None) -> None:
        """Restart the registry with the bearer-token flow, tokens from a `TokenServer` that checks
        `users`; every token it issues is appended to `issued` (the test greps for them too)."""
        self.token_server = TokenServer(self.workdir, users)
        self.token_server.issued_tokens = issued if issued is not None else []
        self.token_server.start()
        self.start_registry(token_auth=self.token_server.registry_config())

    def reject_credentials(self) -> None:
        """From now on the configured credentials are wrong."""
        other = {"someone-else": "not-the-test-password-0000"}
        if self.token_server is not None:
            self.token_server.users = other
        else:
            self._auth = next(iter(other.items()))
            self.start_registry(htpasswd=other)

    # ---- keeping the registry equal to the inventory
    def adopt(self) -> None:
        """The registry holds the inventory as it is now (pushed, or a copy of a template)."""
        for name, (digests, tags) in _state(self.inventory, self.registry).items():
            self._pushed[name] = set(digests)
            self._tags[name] = dict(tags)
            self._remember(name, tags)
        self._seen = self._quick_state()

    def _remember(self, name: str, tags: Dict[str, str]) -> None:
        self._names[upstream_name(name)] = name
        for tag in tags:
            self._tag_names[upstream_tag(tag)] = tag

    def _quick_state(self) -> str:
        repos = self.inventory.registries[self.registry]
        return repr([(name, len(repo.images), sorted(repo.tags.items())) for name, repo in sorted(repos.items())])

    def sync(self) -> None:
        """Push what the inventory gained, re-put moved tags, remove deleted tags."""
        with self._sync_lock:
            now = self._quick_state()
            if now == self._seen:
                return
            pusher = self._pusher()
            repos = self.inventory.registries[self.registry]
            for repo in repos.values():
                self._sync_repository(pusher, repo)
            for name in [name for name in self._tags if name not in repos]:
                # renamed or removed: its manifests go; the CNCF registry keeps listing the name
                for digest in sorted(set(self._tags[name].values())):
                    pusher.delete_manifest(upstream_name(name), digest)
                del self._tags[name], self._pushed[name]
            self._seen = now

    def _sync_repository(self, pusher: Pusher, repo: inv.Repository) -> None:
        name, up = repo.name, upstream_name(repo.name)
        pushed = self._pushed.setdefault(name, set())
        current = self._tags.setdefault(name, {})
        self._remember(name, repo.tags)
        new = [image for digest, image in repo.images.items() if digest not in pushed]
        push_images(pusher, self.inventory, up, sorted(new, key=lambda image: image.is_index), {})
        pushed.update(image.digest for image in new)
        gone = {tag: digest for tag, digest in current.items() if tag not in repo.tags}
        for digest in sorted(set(gone.values())):
            pusher.delete_manifest(up, digest)  # the registry deletes tags only with their manifest
            for tag, old in list(current.items()):
                if old == digest:
                    del current[tag]
        for tag, digest in sorted(repo.tags.items()):
            if current.get(tag) != digest:
                pusher.put_manifest(up, upstream_tag(tag), repo.images[digest].raw, repo.images[digest].media_type)
                current[tag] = digest

    # ---- the proxy
    def handle(self, request: Request, operation: str) -> Response:
        self.sync()
        request = self._to_upstream(request)
        response = super().handle(request, operation)
        if operation in ("catalog", "tags") and response.status == 200 and isinstance(response.body, bytes):
            response = self._from_upstream(response, operation)
        return response

    def _to_upstream(self, request: Request) -> Request:
        match = _PATH.match(request.path)
        if not match:
            return request
        name = unquote(match.group(1))
        rest = match.group(2)
        if rest.startswith("manifests/"):
            reference = unquote(rest[len("manifests/"):])
            if not reference.startswith("sha256:"):
                reference = upstream_tag(reference)
            rest = "manifests/" + quote(reference, safe=":")
        path = f"/v2/{quote(upstream_name(name), safe='/')}/{rest}"
        return Request(request.method, path, request.query, request.headers, request.body, request.raw_query)

    def _from_upstream(self, response: Response, operation: str) -> Response:
        try:
            body = json.loads(response.body)
        except ValueError:
            return response
        if not isinstance(body, dict):
            return response
        if operation == "catalog" and isinstance(body.get("repositories"), list):
            body["repositories"] = [self._names.get(n, n) for n in body["repositories"]]
        if operation == "tags":
            body["name"] = self._names.get(body.get("name"), body.get("name"))
            if isinstance(body.get("tags"), list):
                body["tags"] = [self._tag_names.get(t, t) for t in body["tags"]]
        response.body = json.dumps(body).encode()
        return response


def push_images(pusher: Pusher, inventory: OciInventory, upstream: str, images: List[inv.Image], tags: Dict[str, str]) -> None:
    """Blobs, then manifests by digest (an index after its children), then `tags`."""
    for image in images:
        for blob in ([image.config] if image.config else []) + list(image.layers):
            pusher.ensure_blob(upstream, blob.digest, inventory.blob_data[blob.digest])
        if not image.is_index:
            pusher.put_manifest(upstream, image.digest, image.raw, image.media_type)
    for image in images:
        if image.is_index:
            pusher.put_manifest(upstream, image.digest, image.raw, image.media_type)
    by_digest = {image.digest: image for image in images}
    for tag, digest in sorted(tags.items()):
        image = by_digest[digest]
        pusher.put_manifest(upstream, upstream_tag(tag), image.raw, image.media_type)


_TEMPLATES: Dict[str, Path] = {}
_TEMPLATE_ROOT: List[Path] = []
_TEMPLATE_LOCK = threading.Lock()


def _scratch() -> Optional[str]:
    """Where storage goes: tmpfs when there is one (a registry's storage is thousands of tiny
    files: on a disk, copying and removing them costs seconds), else the temp dir."""
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


def _template_root() -> Path:
    if not _TEMPLATE_ROOT:
        root = Path(tempfile.mkdtemp(prefix="oci-templates-", dir=_scratch()))
        atexit.register(shutil.rmtree, root, True)
        _TEMPLATE_ROOT.append(root)
    return _TEMPLATE_ROOT[0]


def start_served(inventory: OciInventory, registry: Optional[str] = None, faults: Optional[Faults] = None) -> ServedRegistry:
    """A started `ServedRegistry` holding `inventory` (one of its registries)."""
    registry = registry or next(iter(inventory.registries))
    workdir = Path(tempfile.mkdtemp(prefix="oci-served-", dir=_scratch()))
    served = ServedRegistry(inventory, registry, workdir, faults)
    key = fingerprint(inventory, registry)
    with _TEMPLATE_LOCK:
        template = _TEMPLATES.get(key)
        if template is not None:
            shutil.copytree(template, workdir / "data")
        try:
            served.start_registry()
            if template is None:
                pusher = Pusher(served.upstream)
                repos = list(inventory.registries[registry].values())
                with ThreadPoolExecutor(8) as pool:
                    for future in [pool.submit(push_images, pusher, inventory, upstream_name(repo.name),
                                               sorted(repo.images.values(), key=lambda image: image.is_index), repo.tags)
                                   for repo in repos]:
                        future.result()
                template = _template_root() / key
                shutil.copytree(workdir / "data", template)
                _TEMPLATES[key] = template
            served.adopt()
            served.start()
        except BaseException:
            served.stop()
            raise
    return served


def basic_header_value(username: str, password: str) -> str:
    """What travels in `Authorization: Basic …` for these credentials."""
    return base64.b64encode(f"{username}:{password}".encode()).decode()
