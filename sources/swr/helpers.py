"""Huawei Cloud SWR: request signing, paging, error bodies and the mapping of API records to rows.

The API (shared/reference/registry-apis.md section 3) answers bare JSON arrays, pages with
`offset`/`limit` and reports the total in a `Content-Range: <offset>-<count>/<total>` header.
Tag records carry the image manifest as a JSON *string*; it is parsed here for the config and
the layers, so no per-image call is ever needed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Set, Tuple
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import requests
from dlt.sources.helpers.rest_client.paginators import OffsetPaginator
from requests.auth import AuthBase

from .. import model
from ..concurrency import map_bounded
from ..errors import BadResponseError, ConfigError, NotFoundError, redact
from ..http import WHOLE_BODY, build_client, describe_json_error, get_json, paginate
from ..manifests import DOCKER_MANIFEST_LIST, ManifestError, parse_manifest
from ..values import BadValue, to_int, to_time
from .settings import (
    CALL_NAMESPACES,
    CALL_REPOSITORIES,
    CALL_TAGS,
    EMPTY_BODY_SHA256,
    NAMESPACES_PATH,
    PAGE_LIMIT,
    PROJECT_HEADER,
    PROVIDER,
    REGISTRY_HOST_TEMPLATE,
    REPOSITORIES_PATH,
    SDK_DATE_FORMAT,
    SDK_DATE_HEADER,
    SIGNING_ALGORITHM,
    TAGS_PATH,
    TOKEN_HEADER,
)

log = logging.getLogger("registry_etl.swr")

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


# ---------------------------------------------------------------- auth


def canonical_uri(path: str) -> str:
    """The path as the signer sees it: unquoted, each segment re-quoted (safe '~'), ending in '/'."""
    segments = unquote(path).split("/")
    uri = "/".join(quote(segment, safe="~") for segment in segments)
    return uri if uri.endswith("/") else uri + "/"


def canonical_query(query: str) -> str:
    """Query parameters sorted by (name, value), each `name=value` quoted with safe '~'."""
    pairs = sorted(parse_qsl(query, keep_blank_values=True))
    return "&".join(f"{quote(k, safe='~')}={quote(v, safe='~')}" for k, v in pairs)


def body_sha256(body: Any) -> str:
    if not body:
        return EMPTY_BODY_SHA256
    if isinstance(body, str):
        body = body.encode("utf-8")
    return hashlib.sha256(body).hexdigest()


def string_to_sign(method: str, url: str, headers: Mapping[str, str], signed: List[str], body: Any) -> str:
    """The text an SDK-HMAC-SHA256 signature covers (huaweicloudsdkcore's Signer, step by step)."""
    split = urlsplit(url)
    lowered = {k.lower(): str(v).strip() for k, v in headers.items()}
    canonical_headers = "".join(f"{name}:{lowered[name]}\n" for name in signed)
    canonical_request = "\n".join(
        [
            method.upper(),
            canonical_uri(split.path or "/"),
            canonical_query(split.query),
            canonical_headers,
            ";".join(signed),
            body_sha256(body),
        ]
    )
    digest = hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()
    return f"{SIGNING_ALGORITHM}\n{lowered[SDK_DATE_HEADER.lower()]}\n{digest}"


class AkSkAuth(AuthBase):
    """Signs each request with an access key / secret key pair (SDK-HMAC-SHA256).

    Signed headers: Host, X-Sdk-Date, X-Project-Id (when a project is given) and Content-Type
    (when the request has one). Headers a proxy may rewrite (Connection, Accept-Encoding) are
    left unsigned, as the gateway allows.
    """

    def __init__(
        self, access_key: str, secret_key: str, project_id: Optional[str] = None, clock: Clock = _utc_now
    ) -> None:
        self.access_key = access_key
        self._secret_key = secret_key
        self.project_id = project_id
        self.clock = clock

    def __repr__(self) -> str:  # never show the secret, even in a debugger or a traceback
        return f"AkSkAuth(access_key={self.access_key!r}, project_id={self.project_id!r})"

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        url = request.url or ""
        request.headers["Host"] = urlsplit(url).netloc
        request.headers[SDK_DATE_HEADER] = self.clock().astimezone(timezone.utc).strftime(SDK_DATE_FORMAT)
        if self.project_id:
            request.headers[PROJECT_HEADER] = self.project_id
        signed = sorted(
            name.lower()
            for name in request.headers
            if name.lower() in ("host", SDK_DATE_HEADER.lower(), PROJECT_HEADER.lower(), "content-type")
        )
        text = string_to_sign(request.method or "GET", url, request.headers, signed, request.body)
        signature = hmac.new(self._secret_key.encode(), text.encode(), hashlib.sha256).hexdigest()
        request.headers["Authorization"] = (
            f"{SIGNING_ALGORITHM} Access={self.access_key}, SignedHeaders={';'.join(signed)}, Signature={signature}"
        )
        return request


class TokenAuth(AuthBase):
    """An IAM token in `X-Auth-Token` (tokens live 24 hours)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __repr__(self) -> str:
        return "TokenAuth(***)"

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers[TOKEN_HEADER] = self._token
        return request


# ---------------------------------------------------------------- errors

_AUTH_HINTS = {
    "APIG.0301": "the credentials were not accepted: check access_key / secret_key or auth_token",
    "APIG.0303": "the AK/SK signature was refused: check secret_key, and the clock (15 minutes of skew at most)",
    "APIG.0307": "the IAM token expired or was revoked: get a new auth_token",
}


def describe_swr_error(response: requests.Response) -> str:
    """SWR's error array, or the API gateway's error object, as one line (with a hint for auth codes)."""
    try:
        body = response.json()
    except ValueError:
        return describe_json_error(response)
    parts: List[str] = []
    if isinstance(body, list):
        for item in body:
            if isinstance(item, dict):
                parts.append(f"{item.get('errorCode', '?')}: {item.get('errorMessage', '')}".strip())
    elif isinstance(body, dict):
        inner = body.get("error") if isinstance(body.get("error"), dict) else body
        code = inner.get("error_code") or inner.get("errorCode") or inner.get("code")
        message = inner.get("error_msg") or inner.get("errorMessage") or inner.get("message")
        if code or message:
            text = f"{code or '?'}: {message or ''}".strip()
            if code in _AUTH_HINTS:
                text += f" ({_AUTH_HINTS[code]})"
            if body.get("request_id"):
                text += f" [request {body['request_id']}]"
            parts.append(text)
    return redact("; ".join(parts)) if parts else describe_json_error(response)


# ---------------------------------------------------------------- paging

_CONTENT_RANGE = re.compile(r"^\s*(?:items\s+)?(\d+)\s*-\s*(\d+)\s*/\s*(\d+)\s*$")


def parse_content_range(value: Optional[str]) -> Optional[Tuple[int, int]]:
    """(first offset, total) from `Content-Range: <offset>-<count>/<total>`, None when absent."""
    if not value:
        return None
    match = _CONTENT_RANGE.match(value)
    if not match:
        raise ValueError(f"unreadable Content-Range header {value!r}")
    return int(match.group(1)), int(match.group(3))


class ContentRangePaginator(OffsetPaginator):
    """`offset`/`limit` paging over bare arrays, ended and checked by the `Content-Range` total.

    The walk stops at the announced total (or, without the header, at a short or empty page).
    A page that starts elsewhere than asked, or a walk that read fewer or more records than the
    total announced, raises `BadResponseError`: a silent gap in a listing would retire tags that
    still exist.
    """

    def __init__(self, call: str, registry: Optional[str] = None, limit: int = PAGE_LIMIT) -> None:
        super().__init__(limit=limit, offset=0, total_path=None, stop_after_empty_page=True)
        self.call = call
        self.registry = registry
        self.read = 0
        self.total: Optional[int] = None

    def init_request(self, request: Any) -> None:
        self.read, self.total = 0, None
        super().init_request(request)

    def update_state(self, response: requests.Response, data: Optional[List[Any]] = None) -> None:
        count = len(data or [])
        try:
            content_range = parse_content_range(response.headers.get("Content-Range"))
        except ValueError as exc:
            raise self._error(str(exc)) from None
        if content_range is not None:
            start, total = content_range
            if count and start != self.current_value:
                raise self._error(f"asked for offset {self.current_value}, the answer starts at {start}")
            self.total = total
        self.read += count
        self.current_value += self.limit
        done = count == 0 or count < self.limit
        if self.total is not None:
            done = done or self.read >= self.total
        if done:
            self._has_next_page = False
            if self.total is not None and self.read != self.total:
                raise ListingChangedError(
                    PROVIDER,
                    self.call,
                    f"Content-Range announced {self.total} records but {self.read} were read"
                    " (the listing changed while it was read, or the registry skipped records)",
                    registry=self.registry,
                )

    def _error(self, detail: str) -> BadResponseError:
        return BadResponseError(PROVIDER, self.call, detail, registry=self.registry)


class ListingChangedError(BadResponseError):
    """A listing whose record count disagrees with its `Content-Range` total."""


# ---------------------------------------------------------------- names


def registry_host(region: str) -> str:
    """SWR's pull host of a region: `swr.<region>.myhuaweicloud.com`."""
    return REGISTRY_HOST_TEMPLATE.format(region=region)


def registry_name(host: str, namespace: str) -> str:
    """`<pull host>/<namespace>`: with the repository and a tag, what docker pulls."""
    return f"{host}/{namespace}"


def tags_path(namespace: str, repository: str) -> str:
    """The tag-list path; SWR wants a `/` inside a repository name written as `$`."""
    return TAGS_PATH.format(
        namespace=quote(namespace, safe=""), repository=quote(repository.replace("/", "$"), safe="")
    )


# ---------------------------------------------------------------- calls

class SwrApi:
    """The three listing calls of one region's SWR endpoint, with errors turned into ours.

    Each worker thread gets its own HTTP client (a requests session is not meant to be shared
    between threads); all of them count their calls into one counter.
    """

    def __init__(
        self,
        base_url: str,
        host: str,
        auth: AuthBase,
        counter: Optional[Counter] = None,
        page_limit: int = PAGE_LIMIT,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.host = host  # the pull host: registries are `<host>/<namespace>`
        self.auth = auth
        self.page_limit = page_limit
        self.counter = counter if counter is not None else Counter()
        self._counter_lock = threading.Lock()
        self._local = threading.local()

    def registry(self, namespace: str) -> str:
        return registry_name(self.host, namespace)

    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = build_client(self.base_url, auth=self.auth)
        return client

    def _count(self, call: str) -> None:
        with self._counter_lock:
            self.counter[call] += 1

    def list_namespaces(self) -> List[str]:
        """Names of the namespaces the credentials can see."""
        body = get_json(
            self._client(), NAMESPACES_PATH, provider=PROVIDER, call=CALL_NAMESPACES, registry=self.host,
            describe=describe_swr_error, counter=self._count,
        )
        items = body.get("namespaces") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise BadResponseError(PROVIDER, CALL_NAMESPACES, "the answer has no list 'namespaces'", registry=self.host)
        return [item["name"] for item in items if isinstance(item, dict) and item.get("name")]

    def _pages(self, path: str, call: str, registry: str, params: Dict[str, Any]) -> Iterator[List[Dict[str, Any]]]:
        # the answers are bare arrays: the whole body is the page
        yield from paginate(
            self._client(), path, provider=PROVIDER, call=call, registry=registry, params=params,
            paginator=ContentRangePaginator(call, registry, self.page_limit), describe=describe_swr_error,
            counter=self._count, data_selector=WHOLE_BODY, objects=True,
        )

    def _read_all(self, path: str, call: str, registry: str, params: Dict[str, Any]) -> List[Dict[str, Any]]:
        """Every record of a listing; read a second time if it changed while it was paged."""
        for attempt in (1, 2):
            try:
                return [record for page in self._pages(path, call, registry, params) for record in page]
            except ListingChangedError as exc:
                if attempt == 2:
                    raise
                log.warning("swr %s: %s; reading it again", registry, exc.detail)
        raise AssertionError("unreachable")

    def list_repositories(self, namespace: str) -> List[Dict[str, Any]]:
        """A namespace's repository records, all of them."""
        registry = self.registry(namespace)
        return self._read_all(REPOSITORIES_PATH, CALL_REPOSITORIES, registry, {"namespace": namespace})

    def list_tags(self, namespace: str, repository: str) -> List[Dict[str, Any]]:
        """A repository's tag records (manifests included), all of them."""
        registry = self.registry(namespace)
        return self._read_all(tags_path(namespace, repository), CALL_TAGS, f"{registry} repository {repository}", {})


# ---------------------------------------------------------------- mapping

REPOSITORY_FIELDS = {
    "name", "description", "size", "num_images", "num_download",
    "created_at", "updated_at", "created", "updated",
}

# The fields of a repository record that `repositories` has no column for (merged by key).
SWR_REPOSITORIES = model.provider_table(
    "swr_repositories",
    ("provider", "registry", "repository"),
    [
        ("provider", model.S), ("registry", model.S), ("repository", model.S), ("namespace", model.S),
        ("category", model.S), ("is_public", model.B), ("path", model.S), ("internal_path", model.S),
        ("domain_name", model.S), ("logo", model.S), ("url", model.S), ("status", model.B),
        ("total_range", model.I), ("tags", model.S),
    ],
)

# Every field of a tag record but the manifest (its content is in images, images__layers and
# images__manifests): the last record seen of each tag, merged by key. A deleted tag keeps its
# last row here; whether a tag is current is what `tags` (valid_to IS NULL) tells.
SWR_TAGS = model.provider_table(
    "swr_tags",
    ("provider", "registry", "repository", "tag"),
    [
        ("provider", model.S), ("registry", model.S), ("repository", model.S), ("tag", model.S),
        ("digest", model.S), ("id", model.I), ("repo_id", model.I), ("image_id", model.S),
        ("schema", model.I), ("tag_type", model.I), ("path", model.S), ("internal_path", model.S),
        ("size_bytes", model.I), ("is_trusted", model.B), ("scanned", model.B),
        ("created_at", model.T), ("updated_at", model.T), ("deleted_at", model.T),
    ],
)


class Problems:
    """Records what could not be read in one repository's records as `load_problems` rows."""

    def __init__(self, rows: model.Rows, registry: str, repository: Optional[str], call: str) -> None:
        self.rows, self.registry, self.repository, self.call = rows, registry, repository, call
        # times read so far in this repository: its tag records repeat them (a tag's `created`
        # is its image's, `updated` often the same), and a datetime is immutable
        self._times: Dict[Any, datetime] = {}

    def add(self, obj: str, reason: str) -> None:
        self.rows.problem(PROVIDER, self.registry, self.repository, self.call, obj, redact(reason)[:1000])

    def value(self, convert: Callable[[Any], Any], value: Any, obj: str, what: str) -> Any:
        """`convert(value)`, or None and a problem row when the value cannot be read."""
        # the common cases without a call (a tag record has ~8 values to convert): a missing
        # value is None for every converter here, an int an int, a boolean a boolean
        if value is None:
            return None
        kind = type(value)
        if (kind is int and convert is to_int) or (kind is bool and convert is _flag):
            return value
        remember = convert is to_time and (kind is str or kind is int)
        if remember and value in self._times:
            return self._times[value]
        try:
            converted = convert(value)
        except BadValue as exc:  # not remembered: every record with the value is reported
            self.add(obj, f"{what}: {exc}")
            return None
        if remember:
            self._times[value] = converted
        return converted


def _flag(value: Any) -> Optional[bool]:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise BadValue(f"expected a boolean, got {value!r}")


def _text(value: Any) -> Optional[str]:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True) if isinstance(value, (list, dict)) else str(value)


def map_repository(registry: str, record: Mapping[str, Any], rows: model.Rows, problems: Problems) -> str:
    """One repository record into `repositories` and `swr_repositories`; returns its name."""
    name = record["name"]
    obj = f"repository {name}"
    created = record.get("created_at", record.get("created"))
    updated = record.get("updated_at", record.get("updated"))
    rows.add(
        model.REPOSITORIES,
        {
            "provider": PROVIDER,
            "registry": registry,
            "repository": name,
            "created_at": problems.value(to_time, created, obj, "created_at"),
            "updated_at": problems.value(to_time, updated, obj, "updated_at"),
            "image_count": problems.value(to_int, record.get("num_images"), obj, "num_images"),
            "pull_count": problems.value(to_int, record.get("num_download"), obj, "num_download"),
            "size_bytes": problems.value(to_int, record.get("size"), obj, "size"),
            "description": _text(record.get("description")),
            "path": _text(record.get("path")),
        },
    )
    extra: Dict[str, Any] = {"provider": PROVIDER, "registry": registry, "repository": name}
    for key, value in record.items():
        if key in REPOSITORY_FIELDS:
            continue
        if key in ("is_public", "status"):
            value = problems.value(_flag, value, obj, key)
        elif key == "total_range":
            value = problems.value(to_int, value, obj, key)
        else:
            value = _text(value)
        extra[key] = value
    rows.add(SWR_REPOSITORIES, extra)
    return name


def map_tags(
    registry: str,
    repository: str,
    records: Iterable[Mapping[str, Any]],
    rows: model.Rows,
    problems: Problems,
    known_digests: Set[str] = frozenset(),  # type: ignore[assignment]
) -> int:
    """A repository's tag records into `tags`, `swr_tags` and (once per new digest) the image tables.

    Returns the number of tags mapped. A record whose manifest is missing or unreadable still
    gives its tag and its image row (size from `size`); the problem goes to `load_problems`.
    The `tags` and `swr_tags` rows are built as columns (`Rows.add_columns`), not a dict each.
    """
    emitted: Set[str] = set()
    tags: List[Tuple[str, Optional[str]]] = []
    swr_tags = _SwrTagColumns()
    for record in records:
        tag = record.get("Tag", record.get("tag"))
        digest = record.get("digest") or None
        obj = f"{repository}:{tag}"
        if not tag:
            problems.add(obj, "tag record without a tag name; skipped")
            continue
        size = problems.value(to_int, record.get("size"), obj, "size")
        created = problems.value(to_time, record.get("created"), obj, "created")
        tags.append((tag, digest))
        swr_tags.add(tag, record, problems, obj, size, created)
        if not digest:
            problems.add(obj, "tag record without a digest: no image row")
            continue
        if digest in emitted or digest in known_digests:
            continue
        emitted.add(digest)
        _map_image(registry, repository, digest, record, rows, problems, obj, size, created)
    count = len(tags)
    rows.add_columns(model.TAGS, model.tag_columns(PROVIDER, registry, repository, tags), count)
    rows.add_columns(SWR_TAGS, swr_tags.columns(registry, repository), count)
    return count


_TAG_FIELDS_USED = {
    "Tag", "tag", "digest", "manifest", "size", "created", "updated", "deleted",
    "id", "repo_id", "image_id", "schema", "tag_type", "path", "internal_path", "is_trusted", "scanned",
}


class _SwrTagColumns:
    """The `swr_tags` rows of one repository, one list per column: every field of a tag record
    but the manifest; fields this version of the API added are kept as extra columns."""

    # (column, record field, converter or None for text)
    FIELDS = (
        ("id", "id", to_int), ("repo_id", "repo_id", to_int), ("image_id", "image_id", None),
        ("schema", "schema", to_int), ("tag_type", "tag_type", to_int), ("path", "path", None),
        ("internal_path", "internal_path", None), ("is_trusted", "is_trusted", _flag), ("scanned", "scanned", _flag),
        ("updated_at", "updated", to_time), ("deleted_at", "deleted", to_time),
    )

    def __init__(self) -> None:
        self.values: Dict[str, List[Any]] = {
            name: [] for name in ("tag", "digest", "size_bytes", "created_at", *(column for column, _, _ in self.FIELDS))
        }
        self.extra: List[Tuple[int, str, Optional[str]]] = []  # (row, field, text)
        self.count = 0

    def add(
        self, tag: str, record: Mapping[str, Any], problems: Problems, obj: str, size: Optional[int], created: Optional[datetime]
    ) -> None:
        values = self.values
        values["tag"].append(tag)
        values["digest"].append(record.get("digest") or None)
        values["size_bytes"].append(size)
        values["created_at"].append(created)
        for column, name, convert in self.FIELDS:
            value = record.get(name)
            values[column].append(_text(value) if convert is None else problems.value(convert, value, obj, name))
        if record.keys() - _TAG_FIELDS_USED:  # fields this version of the API added: kept, not dropped
            self.extra.extend((self.count, key, _text(value)) for key, value in record.items() if key not in _TAG_FIELDS_USED)
        self.count += 1

    def columns(self, registry: str, repository: str) -> Dict[str, List[Any]]:
        columns = {"provider": [PROVIDER] * self.count, "registry": [registry] * self.count,
                   "repository": [repository] * self.count, **self.values}
        for row, key, text in self.extra:
            columns.setdefault(key, [None] * self.count)[row] = text
        return columns


def _map_image(
    registry: str,
    repository: str,
    digest: str,
    record: Mapping[str, Any],
    rows: model.Rows,
    problems: Problems,
    obj: str,
    size: Optional[int],
    created: Optional[datetime],
) -> None:
    image: Dict[str, Any] = {
        "provider": PROVIDER,
        "registry": registry,
        "repository": repository,
        "digest": digest,
        "size_bytes": size,  # as SWR reports it (config + layers), whatever the manifest says
        "created_at": created,
    }
    raw = record.get("manifest")
    manifest = None
    if raw is None or raw == "":
        problems.add(obj, f"image {digest}: the tag record has no manifest; no layers loaded")
    else:
        try:
            manifest = parse_manifest(raw)
        except ManifestError as exc:
            problems.add(obj, f"image {digest}: {exc}; no layers loaded")
    if manifest is None:
        # all that is left to tell the kind of image: SWR's tag_type (1 = manifest list)
        if problems.value(to_int, record.get("tag_type"), obj, "tag_type") == 1:
            image["media_type"] = DOCKER_MANIFEST_LIST
    else:
        for problem in manifest.problems:
            problems.add(obj, f"image {digest}: {problem}")
    rows.add_image(image, manifest)


# ---------------------------------------------------------------- tasks
# A few repositories whose tags are read together: in this process's threads, or in a worker
# process (sources.concurrency.read_tasks), which builds its own client from the `ApiSpec`.


def make_auth(
    access_key: Optional[str], secret_key: Optional[str], project_id: Optional[str], auth_token: Optional[str]
) -> AuthBase:
    """AK/SK signing when both keys are set (preferred), else the IAM token."""
    if access_key and secret_key:
        if auth_token:
            log.info("swr: both AK/SK and auth_token are set; signing with AK/SK")
        return AkSkAuth(access_key, secret_key, project_id)
    if auth_token:
        return TokenAuth(auth_token)
    raise ConfigError(
        PROVIDER,
        "configuration",
        "no credentials: set access_key and secret_key (and project_id), or auth_token",
        hint="Put them in .dlt/secrets.toml under [sources.swr] or in SOURCES__SWR__ACCESS_KEY, "
        "SOURCES__SWR__SECRET_KEY, SOURCES__SWR__PROJECT_ID / SOURCES__SWR__AUTH_TOKEN.",
    )


@dataclass(frozen=True)
class ApiSpec:
    """How to build an `SwrApi` (a worker process builds its own from it)."""

    base_url: str
    host: str
    page_limit: int
    access_key: Optional[str] = field(default=None, repr=False)
    secret_key: Optional[str] = field(default=None, repr=False)
    project_id: Optional[str] = field(default=None, repr=False)
    auth_token: Optional[str] = field(default=None, repr=False)

    def build(self, counter: Optional[Counter] = None) -> SwrApi:
        auth = make_auth(self.access_key, self.secret_key, self.project_id, self.auth_token)
        return SwrApi(self.base_url, self.host, auth, counter, self.page_limit)


@dataclass
class TagTask:
    """Repositories whose tags to read, each a dict with `namespace`, `registry`, `name` (and
    `stamp`), and the digests the destination already holds per repository name."""

    api: ApiSpec
    repositories: List[Dict[str, Any]]
    known: Dict[str, Set[str]]
    threads: int = 1


def load_tags(api: SwrApi, repo: Mapping[str, Any], known_digests: Set[str]) -> Tuple[model.Rows, bool]:
    """Every tag of one repository as rows (its history scope marker included), and whether
    the tags were read in full."""
    registry, name = repo["registry"], repo["name"]
    rows = model.Rows()
    problems = Problems(rows, registry, name, CALL_TAGS)
    try:
        map_tags(registry, name, api.list_tags(repo["namespace"], name), rows, problems, known_digests)
    except NotFoundError as exc:
        # deleted between the listing and this call: the next listing will not show it
        rows = model.Rows()
        rows.problem(PROVIDER, registry, name, CALL_TAGS, name, f"repository vanished while loading: {exc.detail}")
        return rows, False
    rows.add(model.TAGS, model.scope_marker(PROVIDER, registry, name))
    return rows, True


def read_task(task: TagTask, api: SwrApi) -> Tuple[model.Rows, List[str]]:
    """The task's repositories (up to `task.threads` at once) into one `Rows`, and the names of
    those whose tags were read in full (their stamps may move)."""
    rows, complete = model.Rows(), []
    read = lambda repo: load_tags(api, repo, task.known.get(repo["name"], set()))  # noqa: E731
    for repo, (mapped, read_all) in zip(task.repositories, map_bounded(read, task.repositories, task.threads)):
        rows.merge(mapped)
        if read_all:
            complete.append(repo["name"])
    return rows, complete
