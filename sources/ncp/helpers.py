"""NCP Container Registry: signature v2 auth, paging, the three listing calls, and the mapping
of their answers to unified rows.

NCP's words differ from ours: an NCP *registry* is our registry (its pull endpoint
`<name>.<region>.ncr.ntruss.com` is the `registry` value, so `registry/repository:tag` pulls),
an NCP *image* is our repository, and each tag object carries the tag's manifest digest with
one `images[]` entry per platform. A single-platform tag has one entry whose digest is the tag's
own; a multi-arch tag has entries for the child manifests of its index.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Set, Tuple
from urllib.parse import parse_qs, quote, urlsplit

import requests
from dlt.sources.helpers.rest_client.paginators import PageNumberPaginator

from ..concurrency import map_bounded
from ..errors import AuthError, BadResponseError, NotFoundError, RegistryError, redact
from ..http import build_client, paginate, parsed_json
from ..model import (
    IMAGE_MANIFESTS,
    REPOSITORIES,
    TAGS,
    Rows,
    T,
    I,
    S,
    B,
    provider_table,
    tag_columns,
)
from ..values import BadValue, objects_in, snake_case, to_int, to_list, to_time
from .settings import (
    AUTH_HINT,
    DEFAULT_PAGE_SIZE,
    ENDPOINT_TEMPLATE,
    GATEWAY_ERRORS,
    HEADER_ACCESS_KEY,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    LIST_IMAGES,
    LIST_REGISTRIES,
    LIST_TAGS,
    NOT_FOUND_HINT,
    PROVIDER,
    REGION_ENDPOINT_CODES,
    REGION_PREFIXES,
)

log = logging.getLogger("registry_etl.ncp")

# ---- provider tables: what NCP tells that the unified tables have no column for

NCP_REGISTRIES = provider_table(
    "ncp_registries",
    ("registry",),
    [
        ("registry", S), ("registry_name", S), ("region", S), ("bucket", S), ("created_at", T),
        ("end_point", S), ("end_point_enabled", B), ("private_end_point", S), ("private_id", S),
        ("public_reg_status", B), ("scan_on_push_enabled", B), ("status", S),
    ],
)

NCP_IMAGES = provider_table(
    "ncp_images",
    ("registry", "repository"),
    [
        ("registry", S), ("repository", S), ("registry_name", S), ("namespace", S),
        ("last_updated", T), ("last_updated_raw", S), ("pull_count", I), ("star_count", I),
        ("can_edit", B), ("is_automated", B), ("is_private", B), ("repository_type", S),
        ("status", S), ("user", S),
    ],
)

NCP_TAGS = provider_table(
    "ncp_tags",
    ("registry", "repository", "tag"),
    [
        ("registry", S), ("repository", S), ("tag", S), ("digest", S), ("full_size", I),
        ("last_updated", T), ("creator", S), ("last_updater", S), ("tag_id", S), ("image_id", S),
        ("platform_count", I),
    ],
)


# ---- signature v2


def signature_v2(method: str, uri: str, timestamp_ms: str, access_key: str, secret_key: str) -> str:
    """base64(HMAC-SHA256(secret, "METHOD URI\\ntimestamp\\naccess_key")); URI = path + query as sent."""
    message = f"{method} {uri}\n{timestamp_ms}\n{access_key}"
    digest = hmac.new(secret_key.encode(), message.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


class NcpSignatureV2(requests.auth.AuthBase):
    """Signs every request (every page, every retry) with NCP API gateway signature v2.

    It signs `PreparedRequest.path_url`, the path and query exactly as they go on the wire,
    so percent-encoded image names (`team%2Fapp`) and the paginator's `page` are covered.
    """

    def __init__(self, access_key: str, secret_key: str, clock: Callable[[], float] = time.time) -> None:
        self.access_key = access_key
        self._secret_key = secret_key
        self._clock = clock

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        timestamp = str(int(self._clock() * 1000))
        request.headers[HEADER_TIMESTAMP] = timestamp
        request.headers[HEADER_ACCESS_KEY] = self.access_key
        request.headers[HEADER_SIGNATURE] = signature_v2(
            request.method or "GET", request.path_url, timestamp, self.access_key, self._secret_key
        )
        return request

    def __repr__(self) -> str:  # never the secret
        return f"NcpSignatureV2(access_key={self.access_key!r})"


# ---- paging


class NextPagePaginator(PageNumberPaginator):
    """1-based `page`, stopping when the answer's `next` is null.

    dlt's PageNumberPaginator without a total asks for one empty page past the end; NCP says
    where the end is (`next`), so this stops there. A `next` that does not move forward is an
    error rather than an endless walk.
    """

    def __init__(self, provider: str = PROVIDER, call: str = "list") -> None:
        super().__init__(base_page=1, page_param="page", total_path=None, stop_after_empty_page=True)
        self.provider, self.call = provider, call

    def update_state(self, response: requests.Response, data: Optional[List[Any]] = None) -> None:
        body = parsed_json(response)
        if not isinstance(body, dict) or not isinstance(body.get("results"), list):
            # dlt reads a missing `results` as an empty page and wraps a string in a list: either
            # would end the listing early, and retire the tags it did not show
            raise BadResponseError(self.provider, self.call, "the answer has no `results` list")
        following = body.get("next")
        if following is None or not data:
            self._has_next_page = False
            return
        if isinstance(following, str) and "page=" in following:
            # tolerate a DRF-style link in `next` (the reference documents a page number)
            following = parse_qs(urlsplit(following).query).get("page", [following])[0]
        try:
            following = int(following)
        except (TypeError, ValueError):
            raise BadResponseError(self.provider, self.call, f"`next` is not a page number: {following!r}") from None
        if following <= self.current_value:
            raise BadResponseError(
                self.provider, self.call,
                f"`next` ({following}) does not move past page {self.current_value}, so paging would never end",
            )
        self.current_value = following


def describe_gateway_error(response: requests.Response) -> str:
    """The API gateway's error body in one line: code, message, details."""
    try:
        error = (response.json() or {}).get("error")
    except ValueError:
        error = None
    if not isinstance(error, dict):
        text = (response.text or "").strip()[:300]
        return redact(text or response.reason or "no body")
    code = str(error.get("errorCode", "?"))
    meaning = GATEWAY_ERRORS.get(code)
    parts = [f"gateway error {code}" + (f" ({meaning})" if meaning else ""), str(error.get("message") or "")]
    if error.get("details"):
        parts.append(str(error["details"]))
    return redact(": ".join(part for part in parts if part))


# ---- the API


class NcpApi:
    """One region of the NCP Container Registry API, errors turned into ours."""

    def __init__(
        self,
        access_key: str,
        secret_key: str,
        region: str,
        base_url: str,
        page_size: int = DEFAULT_PAGE_SIZE,
        counter: Optional[Counter] = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.region = region
        self.prefix = REGION_PREFIXES[region]
        self.base_url = base_url.rstrip("/")
        self.page_size = page_size
        self.counter = counter if counter is not None else Counter()
        self._lock = threading.Lock()
        self.client = build_client(self.base_url + self.prefix, auth=NcpSignatureV2(access_key, secret_key, clock))

    @property
    def label(self) -> str:
        """How a call without a registry names where it went."""
        host = self.base_url.split("://", 1)[-1]
        return f"{host}{self.prefix} (region {self.region})"

    def _count(self, call: str) -> None:
        with self._lock:
            self.counter[call] += 1

    def _pages(self, path: str, call: str, registry: Optional[str]) -> Iterator[List[Dict[str, Any]]]:
        described = f"{call} (GET {self.prefix}/{path})"
        try:
            yield from paginate(
                self.client,
                path,
                provider=PROVIDER,
                call=described,
                registry=registry or self.label,
                params={"pagesize": self.page_size},
                paginator=NextPagePaginator(PROVIDER, described),
                data_selector="results",
                describe=describe_gateway_error,
                counter=lambda _: self._count(call),
                objects=True,
            )
        except AuthError as error:
            error.hint = AUTH_HINT
            raise
        except NotFoundError as error:
            error.hint = NOT_FOUND_HINT
            raise
        except RegistryError as error:
            if error.registry is None:
                error.registry = registry or self.label
            raise

    def list_registries(self) -> Iterator[List[Dict[str, Any]]]:
        """`GET /repositories`: the registries of this region."""
        yield from self._pages("repositories", LIST_REGISTRIES, None)

    def list_images(self, registry: str) -> Iterator[List[Dict[str, Any]]]:
        """`GET /repositories/{registry}`: the images (our repositories) of one registry."""
        yield from self._pages(f"repositories/{quote(registry, safe='')}", LIST_IMAGES, registry)

    def list_tags(self, registry: str, image: str) -> Iterator[List[Dict[str, Any]]]:
        """`GET /repositories/{registry}/{imageName}/tags`, the image name URL-encoded (`/` → `%2F`)."""
        path = f"repositories/{quote(registry, safe='')}/{quote(image, safe='')}/tags"
        yield from self._pages(path, LIST_TAGS, registry)


# ---- mapping




def _extras(doc: Dict[str, Any], known: Set[str], prefix: str = "") -> Dict[str, Any]:
    """Fields this code does not know yet, kept under their own (snake_case) names."""
    if not doc.keys() - known:  # the usual case, without a loop in Python
        return {}
    return {prefix + snake_case(key): value for key, value in doc.items() if key not in known}


class Converter:
    """Converts one record's values, recording what it cannot read as a load problem."""

    def __init__(
        self, rows: Rows, registry: Optional[str], repository: Optional[str], call: str, obj: Optional[str],
        times: Optional[Dict[Any, Any]] = None,
    ) -> None:
        self.rows, self.registry, self.repository, self.call, self.obj = rows, registry, repository, call, obj
        # times already read (shared by the records of one repository, which repeat them)
        self.times = times if times is not None else {}

    def __call__(self, doc: Dict[str, Any], field: str, convert: Callable[[Any], Any]) -> Any:
        value = doc.get(field)
        # the common cases without a call (a tag maps ~15 values): a missing value is None for
        # every converter here (to_list's [] is read as `or []`), text is text, an int an int
        if value is None:
            return None
        kind = type(value)
        if (kind is str and convert is _text) or (kind is int and convert is to_int):
            return value
        try:
            if convert is to_time and (kind is int or kind is str):
                known = self.times.get(value)
                if known is None:  # a bad value is not remembered: each record with it is reported
                    known = self.times[value] = to_time(value)
                return known
            return convert(value)
        except BadValue as exc:
            self.rows.problem(PROVIDER, self.registry, self.repository, self.call, self.obj, f"{field}: {exc}")
            return None


def _text(value: Any) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _bool(value: Any) -> Optional[bool]:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise BadValue(f"expected a boolean, got {value!r}")


def registry_endpoint(name: str, region: str, listed: Optional[Dict[str, Any]] = None) -> str:
    """The registry's pull host: its `end_point` when listed, else the documented pattern."""
    end_point = (listed or {}).get("end_point")
    if isinstance(end_point, str) and end_point:
        return end_point.split("://", 1)[-1].rstrip("/")
    return ENDPOINT_TEMPLATE.format(registry=name, code=REGION_ENDPOINT_CODES[region])


_REGISTRY_FIELDS = {
    "name", "bucket", "created", "end_point", "end_point_enabled", "private_end_point", "private_id",
    "public_reg_status", "scan_on_push_enabled", "status",
}


def registry_row(doc: Dict[str, Any], registry: str, region: str, rows: Rows) -> Dict[str, Any]:
    """An `ncp_registries` row from a `GET /repositories` result (or a configured name)."""
    convert = Converter(rows, registry, None, LIST_REGISTRIES, doc.get("name"))
    row = {
        "registry": registry,
        "registry_name": doc.get("name"),
        "region": region,
        "bucket": convert(doc, "bucket", _text),
        "created_at": convert(doc, "created", to_time),
        "end_point": convert(doc, "end_point", _text),
        "end_point_enabled": convert(doc, "end_point_enabled", _bool),
        "private_end_point": convert(doc, "private_end_point", _text),
        "private_id": convert(doc, "private_id", _text),
        "public_reg_status": convert(doc, "public_reg_status", _bool),
        "scan_on_push_enabled": convert(doc, "scan_on_push_enabled", _bool),
        "status": convert(doc, "status", _text),
    }
    row.update(_extras(doc, _REGISTRY_FIELDS))
    return row


_IMAGE_FIELDS = {
    "name", "namespace", "description", "last_updated", "pull_count", "star_count", "can_edit",
    "is_automated", "is_private", "repository_type", "status", "user",
}


def repository_rows(doc: Dict[str, Any], registry: str, registry_name: str, rows: Rows) -> Optional[str]:
    """The `repositories` and `ncp_images` rows of one NCP image; returns its name."""
    name = doc.get("name")
    if not isinstance(name, str) or not name:
        rows.problem(PROVIDER, registry, None, LIST_IMAGES, json.dumps(doc, default=str)[:200], "image without a name")
        return None
    convert = Converter(rows, registry, name, LIST_IMAGES, name)
    updated = convert(doc, "last_updated", to_time)
    pull_count = convert(doc, "pull_count", to_int)
    rows.add(
        REPOSITORIES,
        {
            "provider": PROVIDER,
            "registry": registry,
            "repository": name,
            "updated_at": updated,
            "pull_count": pull_count,
            "description": convert(doc, "description", _text),
        },
    )
    row = {
        "registry": registry,
        "repository": name,
        "registry_name": registry_name,
        "namespace": convert(doc, "namespace", _text),
        "last_updated": updated,
        "last_updated_raw": _text(doc.get("last_updated")),
        "pull_count": pull_count,
        "star_count": convert(doc, "star_count", to_int),
        "can_edit": convert(doc, "can_edit", _bool),
        "is_automated": convert(doc, "is_automated", _bool),
        "is_private": convert(doc, "is_private", _bool),
        "repository_type": convert(doc, "repository_type", _text),
        "status": convert(doc, "status", _text),
        "user": convert(doc, "user", _text),
    }
    row.update(_extras(doc, _IMAGE_FIELDS))
    rows.add(NCP_IMAGES, row)
    return name


_TAG_FIELDS = {"name", "digest", "full_size", "last_updated", "creator", "last_updater", "id", "image_id", "images"}
_ENTRY_FIELDS = {
    "architecture", "os", "variant", "digest", "size", "created", "updated", "latest_pulled", "mediaType",
    "features", "os_features", "os_version",
}


class TagMapper:
    """Maps the tag objects of one repository to `tags`, `ncp_tags`, `images` and
    `images__manifests` rows, each digest once (several tags may point at one manifest).

    Digests already in the destination (`known`) get no `images`, `images__manifests` rows
    again: digests are immutable, and on the filesystem destination (append only) a second
    copy would be a duplicate row (docs/destinations.md).

    The `tags` and `ncp_tags` rows are kept as columns (no dict per tag) and reach `rows` with
    `finish()`, once the repository's tags were read.
    """

    _NCP_TAG_COLUMNS = ("tag", "digest", "full_size", "last_updated", "creator", "last_updater", "tag_id", "image_id", "platform_count")

    def __init__(self, registry: str, repository: str, rows: Rows, known: Set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.registry, self.repository, self.rows = registry, repository, rows
        self.known = known
        self.seen: Set[str] = set()
        self.tag_count = 0
        self.times: Dict[Any, Any] = {}  # see Converter
        self.tags: List[Tuple[str, str]] = []
        self.ncp_tags: Dict[str, List[Any]] = {name: [] for name in self._NCP_TAG_COLUMNS}
        self.extra: List[Tuple[int, str, Any]] = []  # (row, column, value): fields NCP added later

    def finish(self) -> None:
        """The `tags` and `ncp_tags` rows of the tags added so far into `rows`."""
        count = len(self.tags)
        columns = {"registry": [self.registry] * count, "repository": [self.repository] * count, **self.ncp_tags}
        for row, name, value in self.extra:  # as a dict row's update() would: a known name is overwritten
            columns.setdefault(name, [None] * count)[row] = value
        self.rows.add_columns(TAGS, tag_columns(PROVIDER, self.registry, self.repository, self.tags), count)
        self.rows.add_columns(NCP_TAGS, columns, count)
        self.tags, self.extra = [], []
        self.ncp_tags = {name: [] for name in self._NCP_TAG_COLUMNS}

    def add(self, tag: Dict[str, Any]) -> None:
        name, digest = tag.get("name"), tag.get("digest")
        if not isinstance(name, str) or not name or not isinstance(digest, str) or not digest:
            self.rows.problem(
                PROVIDER, self.registry, self.repository, LIST_TAGS,
                str(name) if name else None, "tag without a name or a digest",
            )
            return
        convert = Converter(self.rows, self.registry, self.repository, LIST_TAGS, f"{name} {digest}", self.times)
        # a string or an object where the list belongs, or an entry that is not an object, is
        # reported and skipped
        entries, skipped = objects_in(convert(tag, "images", to_list) or [])
        if skipped:
            self.rows.problem(PROVIDER, self.registry, self.repository, LIST_TAGS, f"{name} {digest}",
                              f"images: {skipped} of {skipped + len(entries)} entries are not objects; skipped")
        self.tag_count += 1
        full_size = convert(tag, "full_size", to_int)
        columns = self.ncp_tags
        for column, value in (
            ("tag", name),
            ("digest", digest),
            ("full_size", full_size),
            ("last_updated", convert(tag, "last_updated", to_time)),
            ("creator", convert(tag, "creator", _text)),
            ("last_updater", convert(tag, "last_updater", _text)),
            ("tag_id", _text(tag.get("id"))),
            ("image_id", _text(tag.get("image_id"))),
            ("platform_count", len(entries)),
        ):
            columns[column].append(value)
        self.extra.extend((len(self.tags), key, value) for key, value in _extras(tag, _TAG_FIELDS).items())
        self.tags.append((name, digest))
        if digest in self.seen or digest in self.known:
            return
        self.seen.add(digest)
        children = [entry for entry in entries if entry.get("digest") and entry.get("digest") != digest]
        if children:
            self._index(tag, digest, children, full_size, convert)
        else:
            own = next((entry for entry in entries if entry.get("digest") == digest), entries[0] if entries else {})
            row = self._entry_row(own, digest, convert)
            if row["size_bytes"] is None:
                row["size_bytes"] = full_size
            self.rows.add_image(row)

    def _entry_row(self, entry: Dict[str, Any], digest: str, convert: Converter) -> Dict[str, Any]:
        row = {
            "provider": PROVIDER,
            "registry": self.registry,
            "repository": self.repository,
            "digest": digest,
            "media_type": convert(entry, "mediaType", _text),
            "size_bytes": convert(entry, "size", to_int),
            "created_at": convert(entry, "created", to_time),
            "last_pulled_at": convert(entry, "latest_pulled", to_time),
            "platform_os": convert(entry, "os", _text),
            "platform_arch": convert(entry, "architecture", _text),
            "platform_variant": convert(entry, "variant", _text) or None,
            "updated_at": convert(entry, "updated", to_time),
            "os_version": convert(entry, "os_version", _text),
            "os_features": convert(entry, "os_features", _text),
            "features": convert(entry, "features", _text),
        }
        row.update(_extras(entry, _ENTRY_FIELDS))
        return row

    def _index(
        self, tag: Dict[str, Any], digest: str, children: List[Dict[str, Any]], full_size: Optional[int], convert: Converter
    ) -> None:
        """A multi-arch tag: the index row, its children's rows, and the links between them."""
        child_rows = [self._entry_row(child, child["digest"], convert) for child in children]
        created = [row["created_at"] for row in child_rows if row["created_at"] is not None]
        pulled = [row["last_pulled_at"] for row in child_rows if row["last_pulled_at"] is not None]
        index_row = {
            "provider": PROVIDER,
            "registry": self.registry,
            "repository": self.repository,
            "digest": digest,
            # the tag object does not carry the index's own media type (some answers may)
            "media_type": _text(tag.get("media_type") or tag.get("mediaType")),
            "size_bytes": full_size,
            "created_at": min(created) if created else None,
            "last_pulled_at": max(pulled) if pulled else None,
            "child_count": len(children),
        }
        self.rows.add_image(index_row)
        for position, row in enumerate(child_rows):
            self.rows.add(
                IMAGE_MANIFESTS,
                {
                    "provider": PROVIDER,
                    "registry": self.registry,
                    "repository": self.repository,
                    "image_digest": digest,
                    "position": position,
                    "digest": row["digest"],
                    "media_type": row["media_type"],
                    "platform_os": row["platform_os"],
                    "platform_arch": row["platform_arch"],
                    "platform_variant": row["platform_variant"],
                    "size_bytes": row["size_bytes"],
                },
            )
            if row["digest"] not in self.seen and row["digest"] not in self.known:
                self.seen.add(row["digest"])
                self.rows.add_image(row)


# ---- reading the tags of repositories (threads here, or worker processes; see
# sources.concurrency.map_in_processes)


@dataclass(frozen=True)
class ApiSpec:
    """How to build an `NcpApi` (a worker process builds its own client from it)."""

    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    region: str
    base_url: str
    page_size: int

    def build(self, counter: Optional[Counter] = None) -> NcpApi:
        return NcpApi(self.access_key, self.secret_key, self.region, self.base_url, self.page_size, counter)


@dataclass
class TagTask:
    """Repositories of one registry whose tags to read (`known`'s keys, in order), each with
    the digests the destination already holds."""

    api: ApiSpec
    registry: str  # the pull endpoint, as in the rows
    registry_name: str  # the NCP registry, as in the paths
    known: Dict[str, Set[str]]
    threads: int = 1


def read_tags(api: NcpApi, registry: str, registry_name: str, repository: str, known: Set[str]) -> Rows:
    """Every page of one repository's tags, mapped."""
    rows = Rows()
    mapper = TagMapper(registry, repository, rows, known)
    for tags in api.list_tags(registry_name, repository):
        for tag in tags:
            mapper.add(tag)
    mapper.finish()
    return rows


def read_task(task: TagTask, api: NcpApi) -> Tuple[Rows, None]:
    """The task's repositories (up to `task.threads` at once) into one `Rows`."""
    rows = Rows()
    read = lambda repository: read_tags(api, task.registry, task.registry_name, repository, task.known[repository])  # noqa: E731
    for mapped in map_bounded(read, list(task.known), task.threads):
        rows.merge(mapped)
    return rows, None
