"""The OCI peer: a REAL registry (Debian's `docker-registry`) instead of an emulator of our own.

- `RegistryProcess` (registry.py): the server on loopback with a temp config (plain, htpasswd
  basic auth, or token auth with `TokenServer` from token.py).
- `RegistryData` / `Pusher` (dataset.py): the generated inventory, derived into small real blobs
  and manifests, pushed with plain HTTP uploads.
- `CountingProxy` (here): a pass-through in front of the registry that counts calls per kind
  (catalog, tags, head_manifest, get_manifest, get_blob, …) and can inject the shared faults
  (429 `TOOMANYREQUESTS` with Retry-After and `ratelimit-*` headers, 503, dropped connections,
  bodies cut short), bend answers (`corrupt()`: JSON answers are decoded for the hook; an answer
  the hook left alone keeps the registry's own bytes) and hold a call (`hold()`).
- `ServedRegistry` / `OciInventory` / `start_served()` (served.py): the registry holding a
  generated inventory and kept equal to it as a test changes it (the reliability suite).
- `start_demo()`: the registry with a small pushed data set, for `registry-etl demo`.
"""

from __future__ import annotations

import copy
import json
import logging
import re
from urllib.parse import urlencode
from typing import Any, Dict, Optional, Tuple

import requests

from emulators.base import Emulator, Faults, Request, Response
from emulators.inventory import Inventory

from .dataset import Pusher, RegistryData
from .registry import RegistryProcess, RegistryUnavailable, registry_binary

log = logging.getLogger("registry_etl.emulators.oci")

__all__ = [
    "CountingProxy",
    "DemoRegistry",
    "Pusher",
    "RegistryData",
    "RegistryProcess",
    "RegistryUnavailable",
    "demo_inventory",
    "registry_binary",
    "start_demo",
]

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-type", "date", "server"}


def classify(method: str, path: str) -> str:
    """The kind of a Distribution API call, for the counters."""
    if path.rstrip("/") == "/v2":
        return "ping"
    if path == "/v2/_catalog":
        return "catalog"
    if path.endswith("/tags/list"):
        return "tags"
    if re.search(r"/manifests/[^/]+$", path):
        return {"HEAD": "head_manifest", "GET": "get_manifest"}.get(method, f"{method.lower()}_manifest")
    if re.search(r"/blobs/uploads/", path):
        return "upload"
    if re.search(r"/blobs/[^/]+$", path):
        return {"HEAD": "head_blob", "GET": "get_blob"}.get(method, f"{method.lower()}_blob")
    return "other"


class CountingProxy(Emulator):
    """Forwards every request to the registry unchanged; counts it; injects faults on request."""

    name = "oci-proxy"

    def __init__(
        self,
        upstream: str,
        faults: Optional[Faults] = None,
        ratelimit: Optional[Tuple[int, int]] = None,
        head_without_digest: bool = False,
        tags_page_size: int = 0,
    ) -> None:
        super().__init__(faults)
        self.upstream = upstream.rstrip("/")
        self.session = requests.Session()
        # (limit, remaining at start): Docker Hub style `ratelimit-*` headers on every answer
        self.ratelimit = ratelimit
        # some registries send no Docker-Content-Digest on HEAD: the client must GET instead
        self.head_without_digest = head_without_digest
        # the CNCF registry ignores `n` on tags/list; GHCR, Docker Hub and Harbor page it with
        # `Link`: with a page size the proxy pages the registry's answer the same way
        self.tags_page_size = tags_page_size

    def operation(self, request: Request) -> str:
        return classify(request.method, request.path)

    def _ratelimit_headers(self) -> Dict[str, str]:
        if not self.ratelimit:
            return {}
        limit, remaining = self.ratelimit
        left = max(0, remaining - sum(self.counters.values()))
        return {"ratelimit-limit": f"{limit};w=21600", "ratelimit-remaining": f"{left};w=21600"}

    def throttle_response(self, operation: str) -> Response:
        return Response(
            429,
            {"errors": [{"code": "TOOMANYREQUESTS", "message": "too many requests", "detail": None}]},
            {"Retry-After": str(self.faults.retry_after_s), **self._ratelimit_headers()},
        )

    def server_error_response(self, operation: str) -> Response:
        return Response(503, {"errors": [{"code": "UNAVAILABLE", "message": "service unavailable"}]})

    def handle(self, request: Request, operation: str) -> Response:
        if operation == "tags" and self.tags_page_size and request.method == "GET":
            return self._tags_page(request)
        return self._forward(request)

    def dispatch(self, request: Request) -> Tuple[Optional[str], Response]:
        fault, response = super().dispatch(request)
        if fault == "truncate" and request.method == "HEAD":
            fault = "drop"  # a HEAD answer has no body to cut short: it is lost instead
        return fault, response

    def _apply_hooks(self, request: Request, operation: str, count: int, response: Response) -> Response:
        """The base hooks, with JSON answers decoded for `corrupt()` (the registry sends bytes)."""
        raw = response.body if isinstance(response.body, bytes) else None
        decoded: Any = None
        if raw and any(r.operation in (operation, "*") for r in self.rewrites) and "json" in (response.content_type or ""):
            try:
                decoded = json.loads(raw)
            except ValueError:
                decoded = None
        original = copy.deepcopy(decoded)
        if decoded is not None:
            response.body = decoded
        result = super()._apply_hooks(request, operation, count, response)
        if result is response and decoded is not None and response.body == original:
            response.body = raw  # untouched: keep the bytes (a manifest's digest is their hash)
        return result

    def _tags_page(self, request: Request) -> Response:
        upstream = self._forward(Request("GET", request.path, {}, request.headers, b""))
        if upstream.status != 200:
            return upstream
        body = json.loads(upstream.body)
        tags = sorted(body.get("tags") or [])
        last = request.param("last")
        start = 0 if last is None else next((i for i, tag in enumerate(tags) if tag > last), len(tags))
        page = tags[start : start + self.tags_page_size]
        headers = dict(upstream.headers)
        if start + self.tags_page_size < len(tags):
            query = urlencode({"n": self.tags_page_size, "last": page[-1]})
            headers["Link"] = f'<{request.path}?{query}>; rel="next"'
        return Response(200, {"name": body.get("name"), "tags": page}, headers)

    def _forward(self, request: Request) -> Response:
        url = self.upstream + request.path + (f"?{request.raw_query}" if request.raw_query else "")
        headers = {k: v for k, v in request.headers.items() if k not in ("host", "content-length", "connection")}
        upstream = self.session.request(
            request.method, url, headers=headers, data=request.body or None, allow_redirects=False
        )
        out_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP}
        out_headers.update(self._ratelimit_headers())
        if self.head_without_digest and request.method == "HEAD":
            out_headers = {k: v for k, v in out_headers.items() if k.lower() != "docker-content-digest"}
        content_type = upstream.headers.get("Content-Type", "application/octet-stream")
        return Response(upstream.status_code, upstream.content, out_headers, content_type=content_type)


def demo_inventory(seed: int = 7) -> Inventory:
    return Inventory(seed=seed, registries=("demo-registry",), repositories=6, images=60)


class DemoRegistry:
    """A started registry process with its pushed data: what `start_demo` returns."""

    def __init__(self, process: RegistryProcess, data: RegistryData) -> None:
        self.process = process
        self.data = data

    @property
    def url(self) -> str:
        return self.process.url

    def stop(self) -> None:
        self.process.stop()


def start_demo(inventory: Optional[Inventory] = None, **_: Any) -> Tuple[DemoRegistry, Dict[str, str]]:
    """Start `docker-registry` on loopback with a small pushed data set.

    Returns the running registry and the env vars that point the source at it. Raises
    `RegistryUnavailable` ("the `docker-registry` binary is not installed …") when the Debian
    package is missing; the demo prints that as a one-line skip note.
    """
    data = RegistryData(inventory or demo_inventory())
    process = RegistryProcess().start()
    try:
        Pusher(process.url).push_all(data)
    except Exception:
        process.stop()
        raise
    return DemoRegistry(process, data), demo_env(process.url)


def demo_env(url: str) -> Dict[str, str]:
    return {"SOURCES__OCI__REGISTRY_URL": url}
