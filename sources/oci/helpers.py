"""HTTP, auth and row mapping for the OCI Distribution API (any registry: CNCF distribution,
Harbor, GitLab, GHCR, Docker Hub, Quay).

Calls, in the order a run makes them:
- `GET /v2/_catalog?n=` pages by the `Link` header (relative links); closed catalogs (Docker Hub,
  GHCR) are replaced by the configured `repositories`.
- `GET /v2/<name>/tags/list` follows `Link` when the registry offers it; the CNCF registry ignores
  `n` and sends the whole list, and `{"tags": null}` when the last manifest is gone.
- `HEAD /v2/<name>/manifests/<tag>` per tag: the digest from `Docker-Content-Digest`.
- `GET /v2/<name>/manifests/<digest>` only for digests not loaded before; an index's children are
  fetched the same way, each becoming its own `images` row.
- `GET /v2/<name>/blobs/<config digest>` once per new config, for `created` and the platform.

Auth (`RegistryAuth`): anonymous, HTTP basic, and the bearer-token challenge of the distribution
token spec, as a `requests` AuthBase, so dlt's RESTClient and its retries (429 with Retry-After,
5xx) are used unchanged.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import threading
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Set, Tuple
from urllib.parse import quote, urlsplit

import requests
from dlt.sources.helpers.rest_client import RESTClient
from dlt.sources.helpers.rest_client.paginators import HeaderLinkPaginator
from requests.auth import AuthBase

from .. import model
from ..errors import ApiError, AuthError, BadResponseError, ConfigError, NotFoundError, redact, register_secret
from ..http import RepeatGuardMixin, build_session, check_response, get_json, paginate
from ..manifests import DOCKER_MANIFEST_V1_SIGNED, Manifest, ManifestError, parse_manifest
from ..values import BadValue, snake_case, to_time

from .settings import (
    CONFIG_MEDIA_TYPES,
    CREATED_ANNOTATION,
    DEFAULT_TOKEN_LIFETIME_S,
    MANIFEST_ACCEPT,
    MAX_CONFIG_BYTES,
    PROVIDER,
    RATELIMIT_HEADERS,
    TOKEN_EXPIRY_MARGIN_S,
)

log = logging.getLogger("registry_etl.oci")


# ---------------------------------------------------------------- registry address


def normalise_registry_url(registry_url: str) -> str:
    """The base URL without a trailing slash; `https://` when no scheme is given."""
    url = (registry_url or "").strip()
    if not url:
        raise ConfigError(PROVIDER, "settings", "registry_url is empty", hint="Set [sources.oci] registry_url.")
    if "://" not in url:
        url = "https://" + url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(PROVIDER, "settings", f"registry_url {registry_url!r} is not an http(s) URL")
    return url.rstrip("/")


def registry_host(registry_url: str) -> str:
    """host[:port] of the registry URL: what `docker pull {registry}/{repository}:{tag}` takes."""
    return urlsplit(normalise_registry_url(registry_url)).netloc


def repository_path(name: str) -> str:
    """A repository name in a URL path: its slashes stay, anything else odd is escaped, and a
    `.` or `..` component is written `%2E` / `%2E%2E` (else the URL parser would resolve it and
    the call would read ANOTHER repository: `a/../b` is not `b`)."""
    return "/".join(_dots(part) for part in quote(name, safe="/").split("/"))


def reference_path(reference: str) -> str:
    return _dots(quote(reference, safe=":"))


def _dots(segment: str) -> str:
    return segment.replace(".", "%2E") if segment in (".", "..") else segment


_DOT_SEGMENT = re.compile(r"(?<=/)\.{1,2}(?=/|$)")


def keep_dot_segments(url: str) -> str:
    """`requests` turns the `%2E` of `repository_path` back into `.` (an unreserved character)
    after it parsed the URL; encode such components again before the request is sent."""
    parts = urlsplit(url)
    path = _DOT_SEGMENT.sub(lambda m: m.group(0).replace(".", "%2E"), parts.path)
    return url if path == parts.path else parts._replace(path=path).geturl()


# ---------------------------------------------------------------- errors


def describe_oci_error(response: requests.Response) -> str:
    """`{"errors":[{"code","message","detail"}]}` as one line; other bodies as text."""
    try:
        errors = response.json().get("errors")
    except (ValueError, AttributeError):
        errors = None
    if isinstance(errors, list) and errors:
        parts = []
        for error in errors[:3]:
            if isinstance(error, dict):
                text = f"{error.get('code')}: {error.get('message')}"
                if error.get("detail"):
                    text += f" ({json.dumps(error['detail'], default=str)[:200]})"
                parts.append(text)
        if parts:
            return redact("; ".join(parts))
    text = (response.text or "").strip()[:300]
    return redact(text or response.reason or f"HTTP {response.status_code}")


# ---------------------------------------------------------------- auth


_CHALLENGE_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


def parse_challenge(header: Optional[str]) -> Tuple[Optional[str], Dict[str, str]]:
    """`Bearer realm="…",service="…",scope="…"` -> ("bearer", {realm, service, scope})."""
    if not header:
        return None, {}
    scheme, _, rest = header.strip().partition(" ")
    params = {m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3) for m in _CHALLENGE_PARAM.finditer(rest)}
    return scheme.lower(), params


def scope_for_url(url: str) -> Optional[str]:
    """The token scope a request needs, as Docker's client derives it from the path."""
    path = urlsplit(url).path
    if path.endswith("/v2/_catalog"):
        return "registry:catalog:*"
    match = re.search(r"/v2/(.+?)/(?:tags/list|manifests/[^/]+|blobs/[^/]+)$", path)
    if match:
        return f"repository:{match.group(1)}:pull"
    return None


@dataclass
class _Token:
    value: str
    expires_at: float  # time.monotonic()

    def fresh(self) -> bool:
        return time.monotonic() < self.expires_at


class RegistryAuth(AuthBase):
    """Anonymous, basic or bearer-token auth, chosen by the registry's 401 challenge.

    The first request goes without credentials; a 401 names the scheme. Basic: the credentials
    are sent from then on. Bearer: a token is fetched from the challenge's realm (with the basic
    credentials when configured) for the challenge's scope, cached per scope until it expires,
    and fetched again on expiry or when the registry refuses it. A request is retried at most
    once with new credentials; a second 401 is returned to the caller (an `AuthError`).
    """

    def __init__(
        self,
        username: Optional[str] = None,
        password: Optional[str] = None,
        *,
        registry: Optional[str] = None,
        verify_tls: bool = True,
        counter: Optional[Callable[[str], None]] = None,
    ) -> None:
        self.username = username or None
        self.password = password or ""
        self.registry = registry
        self.counter = counter
        register_secret(self.password)
        if self.username:  # its base64 form is what travels: keep that out of logs as well
            register_secret(self._basic_header().split(" ", 1)[1])
        self._mode: Optional[str] = None
        self._tokens: Dict[str, _Token] = {}
        self._lock = threading.Lock()
        self._token_session = build_session(verify_tls)

    # -- requests' AuthBase
    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.url = keep_dot_segments(request.url or "")  # runs after requests prepared the URL
        header = self._authorization_for(request.url or "")
        if header:
            request.headers["Authorization"] = header
        request.register_hook("response", self._on_response)
        return request

    def _basic_header(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    def _authorization_for(self, url: str) -> Optional[str]:
        if self._mode == "basic" and self.username:
            return self._basic_header()
        if self._mode == "bearer":
            token = self._cached_token(scope_for_url(url))
            if token:
                return f"Bearer {token}"
        return None

    def _on_response(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        if response.status_code != 401:
            return response
        scheme, params = parse_challenge(response.headers.get("WWW-Authenticate"))
        if scheme == "basic":
            if not self.username:
                return response  # credentials needed and none configured: the caller says so
            self._mode = "basic"
            header = self._basic_header()
        elif scheme == "bearer" and params.get("realm"):
            self._mode = "bearer"
            sent = response.request.headers.get("Authorization")
            cached = self._cached_token(params.get("scope"))
            if cached and f"Bearer {cached}" != sent:
                header = f"Bearer {cached}"  # another thread fetched it meanwhile
            else:
                header = "Bearer " + self._fetch_token(params, response.request.url or "")
        else:
            return response
        if response.request.headers.get("Authorization") == header:
            return response  # these very credentials were refused
        # release the connection, then resend once with the credentials (as HTTPDigestAuth does)
        response.content  # noqa: B018
        response.close()
        retry = response.request.copy()
        retry.headers["Authorization"] = header
        again = response.connection.send(retry, **kwargs)
        again.history.append(response)
        again.request = retry
        return again

    def _cached_token(self, scope: Optional[str]) -> Optional[str]:
        with self._lock:
            token = self._tokens.get(scope or "")
        return token.value if token and token.fresh() else None

    def _fetch_token(self, challenge: Dict[str, str], url: str) -> str:
        realm = challenge["realm"]
        params: List[Tuple[str, str]] = []
        if challenge.get("service"):
            params.append(("service", challenge["service"]))
        scopes = (challenge.get("scope") or "").split()
        params.extend(("scope", scope) for scope in scopes)
        auth = (self.username, self.password) if self.username else None
        call = "GET token"
        try:
            response = self._token_session.get(realm, params=params, auth=auth)
        except requests.RequestException as exc:
            raise ApiError(PROVIDER, call, f"token endpoint {realm}: {type(exc).__name__}: {exc}", registry=self.registry) from None
        if self.counter:
            self.counter("token")
        if response.status_code in (401, 403):
            who = f"user {self.username!r}" if self.username else "anonymous access"
            raise AuthError(
                PROVIDER,
                call,
                f"the token endpoint {realm} refused {who}: {describe_oci_error(response)}",
                registry=self.registry,
                status=response.status_code,
            )
        check_response(response, PROVIDER, call, self.registry, describe_oci_error)
        try:
            body = response.json()
            token = body.get("token") or body.get("access_token")
        except (ValueError, AttributeError):
            token, body = None, {}
        if not token or not isinstance(token, str):
            raise BadResponseError(PROVIDER, call, f"the token endpoint {realm} sent no token", registry=self.registry)
        register_secret(token)
        try:
            lifetime = int(body.get("expires_in") or DEFAULT_TOKEN_LIFETIME_S)
        except (TypeError, ValueError):
            lifetime = DEFAULT_TOKEN_LIFETIME_S
        entry = _Token(token, time.monotonic() + max(0, lifetime - TOKEN_EXPIRY_MARGIN_S))
        with self._lock:
            for scope in set(scopes) | {scope_for_url(url) or ""}:
                self._tokens[scope] = entry
        log.debug("oci registry %s: new token for %s, %s s", self.registry, " ".join(scopes) or "no scope", lifetime)
        return token


# ---------------------------------------------------------------- rate limits


class RateLimitLog:
    """Keeps the registry's `ratelimit-*` headers (Docker Hub) and logs them when they matter."""

    def __init__(self, registry: str) -> None:
        self.registry = registry
        self.last: Dict[str, str] = {}
        self.throttled = 0
        self._logged_first = False

    def observe(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        seen = {name: response.headers[name] for name in RATELIMIT_HEADERS if name in response.headers}
        if seen:
            self.last = seen
            if not self._logged_first:
                self._logged_first = True
                log.info("oci registry %s rate limit: %s", self.registry, _fmt(seen))
        if response.status_code == 429:
            self.throttled += 1
            log.warning(
                "oci registry %s throttled %s (Retry-After %s)%s",
                self.registry,
                urlsplit(response.url).path,
                response.headers.get("Retry-After", "-"),
                f"; rate limit: {_fmt(seen)}" if seen else "",
            )


def _fmt(headers: Dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in headers.items())


# ---------------------------------------------------------------- the client


class LinkPaginator(RepeatGuardMixin, HeaderLinkPaginator):
    """`Link: <…>; rel="next"` paging (relative links resolved) that stops on a repeated link."""

    def __init__(self, call: str) -> None:
        super().__init__()
        self.provider, self.call = PROVIDER, call

    def update_state(self, response: requests.Response, data: Any = None) -> None:
        super().update_state(response, data)
        if self._next_reference:
            self._guard(self._next_reference)


@dataclass
class FetchedManifest:
    digest: str
    media_type: Optional[str]
    raw: bytes


WHOLE_BODY = "$"


class _BodyPagesClient(RESTClient):
    """RESTClient whose pages are the whole JSON body (one dict per page).

    dlt unwraps a one-element selection (`repositories` holding one name becomes the bare
    string), and a `{"tags": null}` body selects nothing; reading the body ourselves avoids both.
    """

    def extract_response(self, response: requests.Response, data_selector: Any) -> List[Any]:
        if data_selector == WHOLE_BODY:
            return [response.json()]
        return super().extract_response(response, data_selector)


def _names(body: Any, key: str, call: str, registry: str, odd: Optional[List[Any]] = None) -> List[str]:
    """The names of one listing page (`repositories` or `tags`).

    `null` is an empty list (the CNCF registry's tag list once the last manifest is deleted).
    A page without the key, or with something else than a list, stops the run: read as "no
    names", it would retire every tag of the registry (or repository) as deleted. Entries that
    are not strings are left out and collected in `odd` (reported by the caller).
    """
    if not isinstance(body, dict) or key not in body:
        what = f"an object without `{key}`" if isinstance(body, dict) else f"a JSON {type(body).__name__}"
        raise BadResponseError(
            PROVIDER, call, f"the answer is {what}, not a page of {key}: stopping rather than reading it as none",
            registry=registry, hint="Check that registry_url points at the registry's API (…/v2/ answers).",
        )
    values = body[key]
    if values is None:
        return []
    if not isinstance(values, list):
        raise BadResponseError(PROVIDER, call, f"`{key}` is a {type(values).__name__}, not a list", registry=registry)
    names = []
    for value in values:
        if isinstance(value, str) and value:
            names.append(value)
        elif odd is not None:
            odd.append(value)
    return names


class OciClient:
    """The Distribution API calls of one registry, on dlt's RESTClient (retries included)."""

    def __init__(
        self,
        registry_url: str,
        username: Optional[str] = None,
        password: Optional[str] = None,
        *,
        registry: Optional[str] = None,
        verify_tls: bool = True,
        counter: Optional[Counter] = None,
    ) -> None:
        self.base_url = normalise_registry_url(registry_url)
        self.registry = registry or urlsplit(self.base_url).netloc
        self.calls: Counter = Counter()  # this registry's calls, for its summary line
        self._shared_counter = counter  # the run's counter (all sources of a load share it)
        self._calls_lock = threading.Lock()
        self._prefetched: Dict[Tuple[str, str], FetchedManifest] = {}
        self.auth = RegistryAuth(username, password, registry=self.registry, verify_tls=verify_tls, counter=self.count)
        self.ratelimits = RateLimitLog(self.registry)
        self.client: RESTClient = _BodyPagesClient(
            base_url=self.base_url + "/", auth=self.auth, session=build_session(verify_tls)
        )
        self.client.session.hooks["response"].append(self.ratelimits.observe)

    def count(self, call: str) -> None:
        with self._calls_lock:
            self.calls[call] += 1
            if self._shared_counter is not None:
                self._shared_counter[call] += 1

    # -- listings
    def catalog(self, page_size: int) -> Iterator[List[str]]:
        """Pages of repository names, in the registry's order, each name once."""
        try:
            yield from self._catalog(page_size)
        except BadResponseError as exc:
            raise self._named(exc) from None

    def _catalog(self, page_size: int) -> Iterator[List[str]]:
        seen: Set[str] = set()
        for page in paginate(
            self.client,
            "v2/_catalog",
            provider=PROVIDER,
            call="GET /v2/_catalog",
            registry=self.registry,
            params={"n": page_size},
            paginator=LinkPaginator("GET /v2/_catalog"),
            data_selector=WHOLE_BODY,
            describe=describe_oci_error,
            counter=lambda _call: self.count("catalog"),
        ):
            odd: List[Any] = []
            names = [name for body in page for name in _names(body, "repositories", "GET /v2/_catalog", self.registry, odd)
                     if name not in seen]
            if odd:
                log.warning("oci registry %s: the catalog lists %d entries that are not names, skipped: %s",
                            self.registry, len(odd), redact(repr(odd[:5])))
            seen.update(names)
            if names:
                yield names

    def _named(self, error: BadResponseError) -> BadResponseError:
        """A paging error raised where the registry is not known (the paginator), with it."""
        if error.registry:
            return error
        return BadResponseError(
            PROVIDER, error.call, error.detail, registry=self.registry,
            hint="The registry's paging is broken (report it to its operator); nothing of this run was loaded.",
        )

    def tags(self, repository: str, odd: Optional[List[Any]] = None) -> Optional[List[str]]:
        """Every tag of a repository (following `Link` when offered); None if it is unknown.
        Entries that are not tag names go to `odd`."""
        call = f"GET /v2/{repository}/tags/list"
        found: List[str] = []
        try:
            for page in paginate(
                self.client,
                f"v2/{repository_path(repository)}/tags/list",
                provider=PROVIDER,
                call=call,
                registry=self.registry,
                paginator=LinkPaginator(call),
                data_selector=WHOLE_BODY,
                describe=describe_oci_error,
                counter=lambda _call: self.count("tags"),
            ):
                for body in page:
                    # `{"tags": null}`: the CNCF registry's answer once the last manifest is deleted
                    found.extend(_names(body, "tags", call, self.registry, odd))
        except NotFoundError:
            return None
        except BadResponseError as exc:
            raise self._named(exc) from None
        return list(dict.fromkeys(found))

    def head_digest(self, repository: str, reference: str) -> Optional[str]:
        """The digest a tag points at (`Docker-Content-Digest`); None if the tag is gone."""
        call = f"HEAD /v2/{repository}/manifests/{reference}"
        response = self._send("HEAD", f"v2/{repository_path(repository)}/manifests/{reference_path(reference)}", call, "head_manifest")
        if response.status_code == 404:
            return None
        check_response(response, PROVIDER, call, self.registry, describe_oci_error)
        digest = response.headers.get("Docker-Content-Digest")
        if digest:
            return digest
        # a registry that omits the header on HEAD: the digest is the sha256 of the manifest,
        # whose bytes are kept so that a new digest is not fetched twice
        fetched = self.manifest(repository, reference)
        if fetched is None:
            return None
        with self._calls_lock:
            self._prefetched[(repository, fetched.digest)] = fetched
        return fetched.digest

    def manifest(self, repository: str, reference: str) -> Optional[FetchedManifest]:
        with self._calls_lock:
            kept = self._prefetched.pop((repository, reference), None)
        if kept is not None:
            return kept
        call = f"GET /v2/{repository}/manifests/{reference}"
        response = self._send("GET", f"v2/{repository_path(repository)}/manifests/{reference_path(reference)}", call, "get_manifest")
        if response.status_code == 404:
            return None
        check_response(response, PROVIDER, call, self.registry, describe_oci_error)
        raw = response.content
        digest = response.headers.get("Docker-Content-Digest") or sha256_digest(raw)
        media_type = (response.headers.get("Content-Type") or "").split(";")[0].strip() or None
        return FetchedManifest(digest, media_type, raw)

    def forget_prefetched(self, repository: str) -> None:
        """Drop manifests kept from HEAD fallbacks once their repository is read."""
        with self._calls_lock:
            for key in [key for key in self._prefetched if key[0] == repository]:
                del self._prefetched[key]

    def blob_json(self, repository: str, digest: str) -> Any:
        """A small JSON blob (an image config); redirects to storage are followed."""
        return get_json(
            self.client,
            f"v2/{repository_path(repository)}/blobs/{reference_path(digest)}",
            provider=PROVIDER,
            call=f"GET /v2/{repository}/blobs/{digest}",
            registry=self.registry,
            describe=describe_oci_error,
            counter=lambda _call: self.count("get_blob"),
        )

    def _send(self, method: str, path: str, call: str, counter: str) -> requests.Response:
        try:
            response = self.client.request(path, method=method, headers={"Accept": MANIFEST_ACCEPT})
        except requests.RequestException as exc:
            raise ApiError(PROVIDER, call, f"{type(exc).__name__}: {exc}", registry=self.registry) from None
        self.count(counter)
        return response

    def summary(self) -> str:
        calls = ", ".join(f"{name} {count}" for name, count in sorted(self.calls.items()))
        text = f"oci registry {self.registry}: calls: {calls or 'none'}"
        if self.ratelimits.throttled:
            text += f"; throttled {self.ratelimits.throttled} times"
        if self.ratelimits.last:
            text += f"; rate limit {_fmt(self.ratelimits.last)}"
        return text


def sha256_digest(raw: bytes) -> str:
    return "sha256:" + hashlib.sha256(raw).hexdigest()


# ---------------------------------------------------------------- mapping


@dataclass
class ConfigInfo:
    created_at: Optional[datetime] = None
    os: Optional[str] = None
    arch: Optional[str] = None
    variant: Optional[str] = None


def read_config(doc: Any, problems: List[str]) -> ConfigInfo:
    """`created` and the platform from an image config blob."""
    if not isinstance(doc, dict):
        problems.append("config blob is not a JSON object")
        return ConfigInfo()
    info = ConfigInfo(
        os=_text(doc.get("os")), arch=_text(doc.get("architecture")), variant=_text(doc.get("variant"))
    )
    try:
        info.created_at = to_time(doc.get("created"))
    except BadValue as exc:
        problems.append(f"config created: {exc}")
    return info


def _text(value: Any) -> Optional[str]:
    return value if isinstance(value, str) and value else None


@dataclass
class ImageRows:
    """The rows of one manifest: its `images` row, layers, index children, problems."""

    image: Dict[str, Any]
    layers: List[Dict[str, Any]] = field(default_factory=list)
    children: List[Dict[str, Any]] = field(default_factory=list)
    problems: List[str] = field(default_factory=list)


def map_manifest(
    registry: str,
    repository: str,
    fetched: FetchedManifest,
    manifest: Manifest,
    config: Optional[ConfigInfo],
    platform: Optional[Tuple[Optional[str], Optional[str], Optional[str]]] = None,
) -> ImageRows:
    """Unified rows of one manifest.

    size_bytes: config + layers for an image manifest (what `docker pull` downloads, compressed);
    NULL for an index or manifest list: the registry reports no size for one, and its children
    are rows of their own with their sizes (adding them up would count shared layers twice).
    created_at: the config's `created`, else the `org.opencontainers.image.created` annotation.
    The platform: the index entry's (for a child), else the config's.
    """
    key = {"provider": PROVIDER, "registry": registry, "repository": repository}
    problems = list(manifest.problems)
    config = config or ConfigInfo()
    created_at = config.created_at
    if created_at is None and manifest.annotations.get(CREATED_ANNOTATION):
        try:
            created_at = to_time(manifest.annotations[CREATED_ANNOTATION])
        except BadValue as exc:
            problems.append(f"annotation {CREATED_ANNOTATION}: {exc}")
    os_, arch, variant = platform if platform and any(platform) else (config.os, config.arch, config.variant)
    if fetched.media_type and manifest.media_type and fetched.media_type != manifest.media_type:
        problems.append(f"Content-Type {fetched.media_type} differs from the manifest's mediaType {manifest.media_type}")
    image: Dict[str, Any] = {
        **key,
        "digest": fetched.digest,
        "media_type": manifest.media_type or fetched.media_type,
        "artifact_media_type": manifest.artifact_type,
        "size_bytes": manifest.content_size,
        "created_at": created_at,
        "config_digest": manifest.config.digest if manifest.config else None,
        "config_size_bytes": manifest.config.size_bytes if manifest.config else None,
        "config_media_type": manifest.config.media_type if manifest.config else None,
        "platform_os": os_,
        "platform_arch": arch,
        "platform_variant": variant,
        "layer_count": None if manifest.is_index else len(manifest.layers),
        "child_count": len(manifest.children) if manifest.is_index else None,
        "manifest_size_bytes": len(fetched.raw),
    }
    if manifest.annotations:
        image["annotations"] = manifest.annotations
    rows = ImageRows(image, problems=problems)
    for position, layer in enumerate(manifest.layers):
        rows.layers.append(
            {**key, "image_digest": fetched.digest, "position": position, "digest": layer.digest,
             "size_bytes": layer.size_bytes, "media_type": layer.media_type}
        )
    for position, child in enumerate(manifest.children):
        rows.children.append(
            {**key, "image_digest": fetched.digest, "position": position, "digest": child.digest,
             "media_type": child.media_type, "platform_os": child.platform_os, "platform_arch": child.platform_arch,
             "platform_variant": child.platform_variant, "size_bytes": child.size_bytes}
        )
    return rows


# what `map_manifest` reads (and the fields of Docker schema 1); any other top-level field of a
# manifest (a newer spec's `subject`, a vendor's extension) is kept as a column of its own
MAPPED_MANIFEST_FIELDS = frozenset((
    "schemaVersion", "mediaType", "config", "layers", "manifests", "annotations", "artifactType",
    "name", "tag", "architecture", "fsLayers", "history", "signatures",
))


def unmapped_fields(raw: bytes) -> Dict[str, Any]:
    """Top-level manifest fields the mapping does not read, as snake_case columns."""
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return {}
    if not isinstance(doc, dict):
        return {}
    return {snake_case(key): value for key, value in doc.items() if key not in MAPPED_MANIFEST_FIELDS}


def problem_row(registry: str, repository: str, call: str, obj: str, reason: str) -> Dict[str, Any]:
    return {
        "provider": PROVIDER, "registry": registry, "repository": repository, "call": call,
        "object": obj, "reason": redact(reason), "seen_at": datetime.now(timezone.utc),
    }


# ---------------------------------------------------------------- one repository


class RepositoryReader:
    """Reads one repository: tags, their digests, and the details of digests not loaded before."""

    def __init__(self, client: OciClient, known: Callable[[str], Set[str]], concurrency: int) -> None:
        self.client = client
        self.known = known
        self.concurrency = max(1, concurrency)
        self._configs: Dict[str, Future] = {}  # config digest -> (ConfigInfo, problem), this run
        self._configs_lock = threading.Lock()
        self._pool: Optional[ThreadPoolExecutor] = None

    def read(self, repository: str, must_exist: bool, rows: Optional[model.Rows] = None) -> model.Rows:
        """Add the rows of one repository to `rows` (a new collection when None)."""
        registry = self.client.registry
        rows = rows if rows is not None else model.Rows()
        odd: List[Any] = []
        tags = self.client.tags(repository, odd)
        for entry in odd:
            rows.add(model.LOAD_PROBLEMS, problem_row(
                registry, repository, "GET tags/list", repr(entry)[:200], f"a tag list entry that is not a tag name: {entry!r}"
            ))
        if tags is None:
            if must_exist:
                raise NotFoundError(
                    PROVIDER, f"GET /v2/{repository}/tags/list", f"repository {repository!r} is unknown",
                    registry=registry, status=404,
                    hint="Check [sources.oci] repositories: the registry does not know this name.",
                )
            tags = []  # listed in the catalog but gone (the CNCF registry keeps deleted names)
        digests = self._map(lambda tag: (tag, self.client.head_digest(repository, tag)), tags)
        tag_map = {tag: digest for tag, digest in digests if digest}
        for tag, digest in digests:
            if not digest:  # listed, then gone (deleted meanwhile), or a type we cannot accept
                rows.add(model.LOAD_PROBLEMS, problem_row(
                    registry, repository, "HEAD manifest", tag, "the tag is listed but its manifest is not found"
                ))
        for tag, digest in sorted(tag_map.items()):
            rows.add(model.TAGS, model.tag_row(PROVIDER, registry, repository, tag, digest))
        self._read_new_manifests(repository, set(tag_map.values()), rows)
        self.client.forget_prefetched(repository)
        rows.add(
            model.REPOSITORIES,
            {"provider": PROVIDER, "registry": registry, "repository": repository,
             "image_count": len(set(tag_map.values())), "tag_count": len(tag_map)},
        )
        return rows

    def _map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> List[Any]:
        if len(items) <= 1 or self.concurrency == 1:
            return [fn(item) for item in items]
        if self._pool is None:  # one pool for the run: starting threads is not free
            self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="oci")
        return list(self._pool.map(fn, items))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _read_new_manifests(self, repository: str, digests: Set[str], rows: model.Rows) -> None:
        known = self.known(repository)
        done: Set[str] = set(known)
        platforms: Dict[str, Tuple[Optional[str], Optional[str], Optional[str]]] = {}
        todo = sorted(digests - done)
        while todo:
            done.update(todo)
            results = self._map(lambda d: self._read_one(repository, d, platforms.get(d)), todo)
            todo = []
            for digest, image_rows in results:
                if image_rows is None:
                    rows.add(model.LOAD_PROBLEMS, problem_row(
                        self.client.registry, repository, "GET manifest", digest,
                        "manifest not found: deleted while this run read the repository, or an index names"
                        " a child the registry does not have",
                    ))
                    continue
                rows.add(model.IMAGES, image_rows.image)
                rows.extend(model.IMAGE_LAYERS, image_rows.layers)
                rows.extend(model.IMAGE_MANIFESTS, image_rows.children)
                for reason in image_rows.problems:
                    rows.add(model.LOAD_PROBLEMS, problem_row(self.client.registry, repository, "GET manifest", digest, reason))
                for child in image_rows.children:
                    child_digest = child["digest"]
                    if child_digest and child_digest not in done and child_digest not in todo:
                        platforms[child_digest] = (child["platform_os"], child["platform_arch"], child["platform_variant"])
                        todo.append(child_digest)

    def _read_one(
        self, repository: str, digest: str, platform: Optional[Tuple[Optional[str], Optional[str], Optional[str]]]
    ) -> Tuple[str, Optional[ImageRows]]:
        registry = self.client.registry
        fetched = self.client.manifest(repository, digest)
        if fetched is None:
            log.warning("oci registry %s: %s@%s vanished while reading", registry, repository, digest)
            return digest, None
        extra_problems: List[str] = []
        actual = sha256_digest(fetched.raw)
        # a signed schema-1 manifest's digest covers the payload without its signatures
        signed_v1 = fetched.media_type == DOCKER_MANIFEST_V1_SIGNED
        if digest.startswith("sha256:") and actual != digest and not signed_v1:
            extra_problems.append(f"manifest bytes hash to {actual}, not to {digest}")
        fetched.digest = digest
        try:
            manifest = parse_manifest(fetched.raw, fetched.media_type)
        except ManifestError as exc:
            rows = ImageRows(
                {"provider": PROVIDER, "registry": registry, "repository": repository, "digest": digest,
                 "media_type": fetched.media_type, "manifest_size_bytes": len(fetched.raw)},
                problems=[str(exc)] + extra_problems,
            )
            return digest, rows
        config = self._config(repository, manifest, extra_problems)
        rows = map_manifest(registry, repository, fetched, manifest, config, platform)
        for column, value in unmapped_fields(fetched.raw).items():
            rows.image.setdefault(column, value)  # never over a column of the model
        rows.problems.extend(extra_problems)
        return digest, rows

    def _config(self, repository: str, manifest: Manifest, problems: List[str]) -> Optional[ConfigInfo]:
        blob = manifest.config
        if manifest.is_index or blob is None or not blob.digest:
            return None
        if blob.media_type not in CONFIG_MEDIA_TYPES or (blob.size_bytes or 0) > MAX_CONFIG_BYTES:
            return None  # an artifact's config, not an image's: nothing to read there
        # one GET per config digest for the whole run, even when threads ask at the same time
        with self._configs_lock:
            future = self._configs.get(blob.digest)
            owner = future is None
            if owner:
                future = self._configs[blob.digest] = Future()
        if owner:
            try:
                future.set_result(self._fetch_config(repository, blob.digest))
            except BaseException as exc:
                future.set_exception(exc)
                raise
        info, problem = future.result()
        if problem:
            problems.append(problem)
        return info

    def _fetch_config(self, repository: str, digest: str) -> Tuple[Optional[ConfigInfo], Optional[str]]:
        try:
            doc = self.client.blob_json(repository, digest)
        except (NotFoundError, BadResponseError) as exc:
            return None, f"config blob {digest}: {exc.detail}"
        problems: List[str] = []
        info = read_config(doc, problems)
        return info, "; ".join(problems) or None
