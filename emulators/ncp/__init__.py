"""A Naver Cloud (NCP) Container Registry emulator: the API gateway paths of
shared/reference/registry-apis.md §2 for the three regions, served from an `Inventory`.

- `GET {prefix}/repositories` (registries), `GET {prefix}/repositories/{registry}` (images, i.e.
  our repositories), `GET {prefix}/repositories/{registry}/{imageName}/tags` and
  `…/tags/{reference}`; `{imageName}` must be percent-encoded (`team%2Fapp`): a raw `/` is a path
  the gateway does not know (404).
- Envelope `{count, next, previous, results}`, 1-based `page` and `pagesize` (> 0, else 400),
  `next`/`previous` are page numbers or null; a page past the end is empty.
- Signature v2 verified over the path and query exactly as received; a timestamp more than
  5 minutes from the emulator's clock is refused; errors in the gateway's body
  `{"error": {"errorCode", "message", "details"}}` (401/200, 404/300, 429/400, 503).
- Inventory registries are NCP registries (region by `regions`, all in `kr` by default); an
  inventory repository is an NCP image; tags as in the inventory, a multi-arch tag lists its
  index's children in `images[]`. An image's `last_updated` moves forward when its tags or images
  change, as the real one does on a push or a tag change.
- Times: `last_updated` of images and tags in epoch milliseconds; the per-platform `created`,
  `updated` and `latest_pulled` in epoch ms or ISO 8601 strings (`time_format`: "ms", "iso",
  or "mixed", alternating per tag), since which one NCP sends is unconfirmed.

Counters: per operation (`ListRegistries`, `ListImages`, `ListTags`, `GetTag`) and, in
`tag_requests`, per (registry, image) so tests can tell which images' tags were read.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import hmac
import math
import threading
import time
from datetime import datetime, timezone
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import unquote

from ..base import Emulator, Faults, Request, Response
from ..inventory import Image, Inventory, Repository

REGION_PREFIXES = {"kr": "/ncr/api/v2", "sgn": "/ncr/sgn-api/v2", "jpn": "/ncr/jpn-api/v2"}
REGION_CODES = {"kr": "kr", "sgn": "sg", "jpn": "jp"}
DEMO_ACCESS_KEY = "NCPEMULATORACCESSKEY01"
DEMO_SECRET_KEY = "ncp-emulator-secret-key-000000000000000000"
MAX_SKEW_MS = 5 * 60 * 1000
DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 100


def signature_v2(method: str, uri: str, timestamp: str, access_key: str, secret_key: str) -> str:
    """The gateway's own computation (kept apart from the source's on purpose)."""
    message = "\n".join((f"{method} {uri}", timestamp, access_key)).encode()
    return base64.b64encode(hmac.new(secret_key.encode(), message, hashlib.sha256).digest()).decode()


class GatewayError(Exception):
    def __init__(self, status: int, code: str, message: str, details: str = "") -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details

    def response(self) -> Response:
        return Response(self.status, {"error": {"errorCode": self.code, "message": self.message, "details": self.details}})


def _ms(epoch_ns: Optional[int]) -> Optional[int]:
    return None if epoch_ns is None else epoch_ns // 1_000_000


def _iso(epoch_ms: Optional[int]) -> Optional[str]:
    if epoch_ms is None:
        return None
    stamp = datetime.fromtimestamp(epoch_ms // 1000, tz=timezone.utc).replace(microsecond=(epoch_ms % 1000) * 1000)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


class NcpEmulator(Emulator):
    """Serves an `Inventory` as NCP Container Registry registries, images and tags."""

    name = "ncp"

    def __init__(
        self,
        inventory: Inventory,
        faults: Optional[Faults] = None,
        credentials: Optional[Dict[str, str]] = None,
        regions: Optional[Dict[str, List[str]]] = None,
        time_format: str = "mixed",
        clock: Callable[[], float] = time.time,
        verify_signatures: bool = True,
    ) -> None:
        super().__init__(faults)
        self.inventory = inventory
        self.credentials = credentials if credentials is not None else {DEMO_ACCESS_KEY: DEMO_SECRET_KEY}
        self.regions = regions if regions is not None else {"kr": list(inventory.registries)}
        self.time_format = time_format
        self.clock = clock
        self.verify_signatures = verify_signatures
        self.tag_requests: collections.Counter = collections.Counter()  # (registry, image) -> calls
        self.rejected: collections.Counter = collections.Counter()  # auth failures by reason
        # (registry, image) -> (fingerprint, last_updated ms); moves forward on every change
        self._image_stamps: Dict[Tuple[str, str], Tuple[str, int]] = {}
        self._tag_stamps: Dict[Tuple[str, str, str], Tuple[str, int]] = {}
        self._stamp_lock = threading.Lock()

    def reset_counters(self) -> None:
        super().reset_counters()
        self.tag_requests.clear()
        self.rejected.clear()

    def _control(self, request: Request) -> Response:
        response = super()._control(request)
        if request.path == "/_emulator/counters" and isinstance(response.body, dict):
            with self._lock:
                response.body["tag_requests"] = {f"{reg}/{image}": n for (reg, image), n in self.tag_requests.items()}
        return response

    # ---- protocol
    def operation(self, request: Request) -> str:
        _, parts = self._route(request.path)
        if parts is None:
            return "Unknown"
        return {1: "ListRegistries", 2: "ListImages", 4: "ListTags", 5: "GetTag"}.get(len(parts), "Unknown")

    def _route(self, path: str) -> Tuple[Optional[str], Optional[List[str]]]:
        """(region, raw path segments after the prefix), or (None, None) for an unknown path."""
        for region, prefix in REGION_PREFIXES.items():
            if path.startswith(prefix + "/"):
                parts = path[len(prefix) + 1:].rstrip("/").split("/")
                if parts[0] != "repositories" or (len(parts) >= 4 and parts[3] != "tags") or len(parts) == 3:
                    return region, None
                return region, parts
        return None, None

    def throttle_response(self, operation: str) -> Response:
        response = GatewayError(429, "400", "Quota Exceeded", "Too many requests, retry later").response()
        response.headers["Retry-After"] = str(self.faults.retry_after_s)
        return response

    def server_error_response(self, operation: str) -> Response:
        return GatewayError(503, "500", "Service Unavailable", "The backend is not available").response()

    def handle(self, request: Request, operation: str) -> Response:
        try:
            region, parts = self._route(request.path)
            if parts is None or operation == "Unknown":
                raise GatewayError(404, "300", "Not Found Exception", f"no API at {request.path}")
            self._authenticate(request)
            if request.method != "GET":
                raise GatewayError(405, "310", "Method Not Allowed", request.method)
            registries = self._registries(region)
            if operation == "ListRegistries":
                return Response(200, self._page(request, registries, lambda name: self._registry_doc(region, name)))
            registry = unquote(parts[1])
            if registry not in registries:
                raise GatewayError(404, "300", "Not Found Exception", f"registry {registry} does not exist")
            repos = self.inventory.registries[registry]
            if operation == "ListImages":
                return Response(200, self._page(request, sorted(repos), lambda name: self._image_doc(repos[name])))
            image = unquote(parts[2])
            repo = repos.get(image)
            if repo is None:
                raise GatewayError(404, "300", "Not Found Exception", f"image {image} does not exist in {registry}")
            if operation == "ListTags":
                with self._lock:
                    self.tag_requests[(registry, image)] += 1
                return Response(200, self._page(request, sorted(repo.tags), lambda tag: self._tag_doc(repo, tag)))
            reference = unquote(parts[4])
            if reference not in repo.tags:
                raise GatewayError(404, "300", "Not Found Exception", f"tag {reference} does not exist")
            return Response(200, self._tag_doc(repo, reference))
        except GatewayError as error:
            return error.response()

    def _authenticate(self, request: Request) -> None:
        timestamp = request.header("x-ncp-apigw-timestamp")
        access_key = request.header("x-ncp-iam-access-key")
        signature = request.header("x-ncp-apigw-signature-v2")
        if not (timestamp and access_key and signature):
            self._reject("missing")
            raise GatewayError(401, "200", "Authentication Failed", "Missing authentication headers.")
        try:
            skew = abs(int(timestamp) - int(self.clock() * 1000))
        except ValueError:
            skew = MAX_SKEW_MS + 1
        if skew > MAX_SKEW_MS:
            self._reject("timestamp")
            raise GatewayError(401, "200", "Authentication Failed", "Timestamp is out of the allowed range (5 minutes).")
        if not self.verify_signatures:
            return
        secret = self.credentials.get(access_key)
        if secret is None:
            self._reject("access_key")
            raise GatewayError(401, "200", "Authentication Failed", "Invalid access key.")
        uri = request.path + (f"?{request.raw_query}" if request.raw_query else "")
        expected = signature_v2(request.method, uri, timestamp, access_key, secret)
        if not hmac.compare_digest(expected, signature):
            self._reject("signature")
            raise GatewayError(401, "200", "Authentication Failed", "Signature does not match.")

    def _reject(self, reason: str) -> None:
        with self._lock:
            self.rejected[reason] += 1

    # ---- paging
    def _page(self, request: Request, keys: List[Any], render: Callable[[Any], Dict[str, Any]]) -> Dict[str, Any]:
        """The requested page of `keys`, each rendered by `render`: only that page's documents are
        built (building every document for each page made listing a registry quadratic)."""
        try:
            page = int(request.param("page", "1"))
            size = int(request.param("pagesize", str(DEFAULT_PAGE_SIZE)))
        except ValueError:
            raise GatewayError(400, "100", "Bad Request Exception", "page and pagesize must be numbers") from None
        if page < 1 or size < 1:
            raise GatewayError(400, "100", "Bad Request Exception", "page and pagesize must be greater than 0")
        size = min(size, MAX_PAGE_SIZE)
        pages = max(1, math.ceil(len(keys) / size))
        start = (page - 1) * size
        return {
            "count": len(keys),
            "next": page + 1 if page < pages else None,
            "previous": min(page - 1, pages) if page > 1 else None,
            "results": [render(key) for key in keys[start:start + size]],
        }

    # ---- documents
    def _registries(self, region: Optional[str]) -> List[str]:
        return [name for name in self.regions.get(region or "", []) if name in self.inventory.registries]

    def endpoint(self, registry: str) -> str:
        region = next((r for r, names in self.regions.items() if registry in names), "kr")
        return f"{registry}.{REGION_CODES[region]}.ncr.ntruss.com"

    def _registry_doc(self, region: str, name: str) -> Dict[str, Any]:
        repos = self.inventory.registries[name].values()
        created = min([repo.created_ns for repo in repos], default=None)
        private_id = hashlib.sha256(name.encode()).hexdigest()[:10]
        return {
            "bucket": f"ncr-bucket-{name}",
            "created": _ms(created),
            "end_point": f"{name}.{REGION_CODES[region]}.ncr.ntruss.com",
            "end_point_enabled": True,
            "name": name,
            "private_end_point": f"{private_id}.{REGION_CODES[region]}.private-ncr.ntruss.com",
            "private_id": private_id,
            "public_reg_status": True,
            "scan_on_push_enabled": False,
            "status": "RUNNING",
        }

    def _stamp(self, table: Dict[Any, Tuple[str, int]], key: Any, fingerprint: str, initial_ms: int) -> int:
        """A last_updated that moves forward whenever the fingerprint changes."""
        with self._stamp_lock:
            known = table.get(key)
            if known is None:
                stamp = initial_ms
            elif known[0] != fingerprint:
                stamp = max(known[1] + 1, int(self.clock() * 1000))
            else:
                return known[1]
            table[key] = (fingerprint, stamp)
            return stamp

    def image_last_updated(self, repo: Repository) -> int:
        fingerprint = hashlib.sha256(
            repr((sorted(repo.tags.items()), sorted(repo.images))).encode()
        ).hexdigest()
        return self._stamp(self._image_stamps, (repo.registry, repo.name), fingerprint, _ms(repo.updated_ns))

    def visible_images(self, repo: Repository) -> Dict[str, Image]:
        """What NCP shows of a repository: tagged manifests and the children of tagged indexes."""
        out: Dict[str, Image] = {}
        for digest in set(repo.tags.values()):
            image = repo.images[digest]
            out[digest] = image
            for child in image.children:
                out[child.digest] = child
        return out

    def _image_doc(self, repo: Repository) -> Dict[str, Any]:
        return {
            "can_edit": True,
            "description": repo.description,
            "is_automated": None,
            "is_private": None,
            "last_updated": self.image_last_updated(repo),
            "name": repo.name,
            "namespace": repo.registry,
            "pull_count": sum(image.pull_count for image in self.visible_images(repo).values()),
            "repository_type": "image",
            "star_count": None,
            "status": 0,
            "user": None,
        }

    def _time(self, epoch_ms: Optional[int], tag: str) -> Any:
        iso = self.time_format == "iso" or (
            self.time_format == "mixed" and hashlib.sha256(tag.encode()).digest()[0] % 2 == 1
        )
        return _iso(epoch_ms) if iso else epoch_ms

    def _entry(self, image: Image, tag: str) -> Dict[str, Any]:
        os_name, arch, variant = image.platform or ("linux", "amd64", None)
        return {
            "architecture": arch,
            "created": self._time(_ms(image.created_ns), tag),
            "digest": image.digest,
            "features": "",
            "latest_pulled": self._time(_ms(image.last_pulled_ns), tag),
            "mediaType": image.media_type,
            "os": os_name,
            "os_features": "",
            "os_version": "",
            "size": image.content_size,
            "updated": self._time(_ms(image.created_ns), tag),
            "variant": variant,
        }

    def _tag_doc(self, repo: Repository, tag: str) -> Dict[str, Any]:
        digest = repo.tags[tag]
        image = repo.images[digest]
        entries = [self._entry(child, tag) for child in image.children] if image.is_index else [self._entry(image, tag)]
        stamp = self._stamp(self._tag_stamps, (repo.registry, repo.name, tag), digest, _ms(image.created_ns))
        numeric = int(hashlib.sha256(f"{repo.registry}/{repo.name}:{tag}".encode()).hexdigest()[:8], 16)
        return {
            "creator": "emulator-user",
            "digest": digest,
            "full_size": image.content_size,
            "id": numeric,
            "image_id": int(digest[7:15], 16),
            "images": entries,
            "last_updated": stamp,
            "last_updater": "emulator-user",
            "name": tag,
        }


def demo_inventory(seed: int = 13) -> Inventory:
    return Inventory(seed=seed, registries=("demo-apps", "demo-platform"), repositories=10, images=120)


def start_demo(
    inventory: Optional[Inventory] = None, faults: Optional[Faults] = None, **kwargs: Any
) -> Tuple[NcpEmulator, Dict[str, str]]:
    """Start the emulator with demo data; return it and the env vars that point the source at it."""
    emulator = NcpEmulator(inventory or demo_inventory(), faults, **kwargs)
    emulator.start()
    return emulator, demo_env(emulator)


def demo_env(emulator: NcpEmulator, region: str = "kr") -> Dict[str, str]:
    access_key, secret_key = next(iter(emulator.credentials.items()))
    return {
        "SOURCES__NCP__BASE_URL": emulator.url,
        "SOURCES__NCP__REGION": region,
        "SOURCES__NCP__ACCESS_KEY": access_key,
        "SOURCES__NCP__SECRET_KEY": secret_key,
    }
