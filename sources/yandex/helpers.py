"""Yandex Container Registry: the REST calls, and the mapping of API records to unified rows.

Calls (all `GET`, `nextPageToken` paging with pageSize 1000, a repeating token stops the walk):
`/registries?folderId` (Registry.list), `/registries/{id}` (Registry.get),
`/repositories?registryId` (Repository.list), `/images?registryId|repositoryName` (Image.list).
Image.list gives everything about an image in one record (blobs, tags, createdAt), so there is
no per-image call to save: images already loaded are simply not emitted again, tags always are.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Dict, Iterator, List, Optional, Set, Tuple
from urllib.parse import quote

import pyarrow as pa
from dlt.sources.helpers.rest_client import RESTClient

from ..errors import BadResponseError, NotFoundError
from ..http import GuardedCursorPaginator, build_client, get_json, paginate
from ..model import (
    IMAGE_LAYERS,
    IMAGES,
    REPOSITORIES,
    TAGS,
    TIMESTAMP,
    Rows,
    provider_table,
    scope_marker,
    tag_row,
)
from ..values import BadValue, as_list, objects_in, snake_case, to_int, to_list, to_text, to_time
from .auth import BearerAuth, describe_status
from .settings import PAGE_SIZE, PROVIDER, PULL_HOST

log = logging.getLogger("registry_etl.yandex")

# Registry.list fields: one row per registry (status and labels are not in the unified tables)
YANDEX_REGISTRIES = provider_table(
    "yandex_registries",
    ("registry_id",),
    [
        ("registry_id", pa.string()), ("registry", pa.string()), ("folder_id", pa.string()),
        ("name", pa.string()), ("status", pa.string()), ("created_at", TIMESTAMP), ("labels", pa.string()),
    ],
)

# Image.list fields the unified `images` table has no column for
YANDEX_IMAGES = provider_table(
    "yandex_images",
    ("registry", "repository", "digest"),
    [
        ("registry", pa.string()), ("repository", pa.string()), ("digest", pa.string()),
        ("image_id", pa.string()), ("registry_id", pa.string()), ("name", pa.string()),
        ("config_blob_id", pa.string()), ("config_urls", pa.string()),
    ],
)


# ---- names
def registry_ref(registry_id: str) -> str:
    """The `registry` column: what `docker pull` takes before the repository."""
    return f"{PULL_HOST}/{registry_id}"


def repository_of(name: str, registry_id: str) -> str:
    """The repository part of an API name: Yandex names carry the registry id (`crp…/app`)."""
    prefix = registry_id + "/"
    return name[len(prefix) :] if name.startswith(prefix) else name


def full_name(registry_id: str, repository: str) -> str:
    """The API's name of a repository (`<registry id>/<repository>`), for `repositoryName`."""
    return f"{registry_id}/{repository}"


# ---- the API
class YandexApi:
    """The calls of one run."""

    def __init__(self, base_url: str, auth: BearerAuth, counter: Optional[Counter] = None, page_size: int = PAGE_SIZE) -> None:
        self.base_url = base_url.rstrip("/")
        self.auth = auth
        self.counter = counter if counter is not None else Counter()
        self.page_size = page_size
        self._local = threading.local()

    def client(self) -> RESTClient:
        """One REST client per thread: requests sessions are not meant to be shared by threads."""
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = build_client(self.base_url, auth=self.auth)
        return client

    def _count(self, call: str) -> None:
        self.counter[call.split(" ", 1)[0]] += 1

    def _pages(self, path: str, params: Dict[str, Any], selector: str, call: str, registry: Optional[str]) -> Iterator[List[Dict[str, Any]]]:
        paginator = GuardedCursorPaginator("nextPageToken", "pageToken", PROVIDER, call)
        for page in paginate(
            self.client(),
            path,
            provider=PROVIDER,
            call=call,
            registry=registry,
            params={**params, "pageSize": self.page_size},
            paginator=paginator,
            data_selector=selector,
            describe=describe_status,
            counter=self._count,
        ):
            # dlt wraps a string where the list belongs in a list: `"images": "all"` would read as
            # an empty page and retire the tags it did not show
            if not all(isinstance(item, dict) for item in page):
                raise BadResponseError(PROVIDER, call, f"the answer's `{selector}` is not a list of objects", registry=registry)
            yield page

    def registries(self, folder_id: str) -> Iterator[List[Dict[str, Any]]]:
        return self._pages("registries", {"folderId": folder_id}, "registries", f"Registry.list (folder {folder_id})", None)

    def registry(self, registry_id: str) -> Dict[str, Any]:
        return get_json(
            self.client(),
            f"registries/{quote(registry_id, safe='')}",
            provider=PROVIDER,
            call="Registry.get",
            registry=registry_ref(registry_id),
            describe=describe_status,
            counter=self._count,
        )

    def repositories(self, registry_id: str) -> Iterator[List[Dict[str, Any]]]:
        return self._pages(
            "repositories", {"registryId": registry_id}, "repositories", "Repository.list", registry_ref(registry_id)
        )

    def images(self, registry_id: str, repository: Optional[str] = None) -> Iterator[List[Dict[str, Any]]]:
        if repository is None:
            return self._pages("images", {"registryId": registry_id}, "images", "Image.list", registry_ref(registry_id))
        name = full_name(registry_id, repository)
        return self._pages("images", {"repositoryName": name}, "images", f"Image.list (repository {name})", registry_ref(registry_id))


# ---- mapping
def _json_text(value: Any) -> Optional[str]:
    if value is None:
        return None
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def registry_row(record: Dict[str, Any], rows: Rows) -> Optional[Dict[str, Any]]:
    """A `yandex_registries` row; unknown fields are kept as extra columns."""
    registry_id = record.get("id")
    if not registry_id:
        rows.problem(PROVIDER, None, None, "Registry.list", None, f"a registry without an id: {_json_text(record)[:200]}")
        return None
    row: Dict[str, Any] = {
        "registry_id": registry_id,
        "registry": registry_ref(registry_id),
        "folder_id": record.get("folderId"),
        "name": record.get("name"),
        "status": record.get("status"),
        "created_at": _time(record.get("createdAt"), rows, registry_ref(registry_id), None, "Registry.list", "createdAt"),
        "labels": _json_text(record.get("labels") or {}),
    }
    for key, value in record.items():
        if key not in ("id", "folderId", "name", "status", "createdAt", "labels"):
            row[snake_case(key)] = value
    return row


def _time(value: Any, rows: Rows, registry: Optional[str], repository: Optional[str], call: str, what: str) -> Optional[datetime]:
    try:
        return to_time(value)
    except BadValue as exc:
        rows.problem(PROVIDER, registry, repository, call, what, str(exc))
        return None


def _int(value: Any, rows: Rows, registry: str, repository: Optional[str], obj: str) -> Optional[int]:
    try:
        return to_int(value)
    except BadValue as exc:
        rows.problem(PROVIDER, registry, repository, "Image.list", obj, str(exc))
        return None




_IMAGE_FIELDS = {"id", "name", "digest", "compressedSize", "config", "layers", "tags", "createdAt"}


@dataclass
class RepositoryTotals:
    """What the image listing tells about a repository (Repository.list gives only name and id)."""

    repository_id: Optional[str] = None
    image_count: int = 0
    blobs: Dict[str, int] = field(default_factory=dict)  # digest -> size: distinct blobs stored
    updated_at: Optional[datetime] = None

    def add(self, created_at: Optional[datetime], blobs: List[Tuple[Optional[str], Optional[int]]]) -> None:
        self.image_count += 1
        for digest, size in blobs:
            if digest and size is not None:
                self.blobs[digest] = size
        if created_at and (self.updated_at is None or created_at > self.updated_at):
            self.updated_at = created_at


class UnitMapper:
    """Maps the Image.list records of one unit (a registry, or one repository) to rows."""

    def __init__(self, registry_id: str, known: Callable[[str, str], Set[str]], rows: Rows) -> None:
        self.registry_id = registry_id
        self.registry = registry_ref(registry_id)
        self.known = known
        self.rows = rows
        self.totals: Dict[str, RepositoryTotals] = {}
        self._seen: Set[Tuple[str, str]] = set()  # (repository, digest) already mapped in this run
        self._tags: Dict[str, Tuple[Optional[datetime], Dict[str, Any]]] = {}  # tag_key -> (createdAt, row)

    def add_image(self, record: Dict[str, Any]) -> None:
        name, digest = record.get("name"), record.get("digest")
        if not name or not digest:
            self.rows.problem(PROVIDER, self.registry, None, "Image.list", record.get("id"), "an image without a name or digest")
            return
        repository = repository_of(str(name), self.registry_id)
        if (repository, digest) in self._seen:
            return  # listed twice (pages shifted while a push happened): the first is as good
        self._seen.add((repository, digest))
        created_at = _time(record.get("createdAt"), self.rows, self.registry, repository, "Image.list", f"{digest} createdAt")
        config = record.get("config") if isinstance(record.get("config"), dict) else None
        layers, skipped = objects_in(self._list(record, "layers", repository, digest))
        if skipped:
            self.rows.problem(PROVIDER, self.registry, repository, "Image.list", f"{digest} layers",
                              f"layers: {skipped} of {skipped + len(layers)} entries are not objects; skipped")
        blobs = [(b.get("digest"), _int(b.get("size"), self.rows, self.registry, repository, f"{digest} blob size")) for b in ([config] if config else []) + layers]
        self.totals.setdefault(repository, RepositoryTotals()).add(created_at, blobs)
        for tag in self._list(record, "tags", repository, digest):
            name = self._tag_name(tag, repository, digest)
            if name:
                self._add_tag(repository, name, digest, created_at)
        if digest in self.known(self.registry, repository):
            return  # digests are immutable: what is loaded stays right
        self._add_details(record, repository, digest, created_at, config, layers, blobs)

    def _list(self, record: Dict[str, Any], field_name: str, repository: str, digest: str) -> List[Any]:
        """A list field of an image record; anything else is reported and read as empty."""
        try:
            return to_list(record.get(field_name))
        except BadValue as exc:
            self.rows.problem(PROVIDER, self.registry, repository, "Image.list", f"{digest} {field_name}", f"{field_name}: {exc}; skipped")
            return []

    def _tag_name(self, tag: Any, repository: str, digest: str) -> Optional[str]:
        """One entry of `tags` as a tag name; an object, a list or an empty name is reported and skipped."""
        try:
            name = to_text(tag)
        except BadValue as exc:
            name, reason = None, f"tags: {exc}; skipped"
        else:
            reason = "tags: an empty tag name; skipped"
        if not name:
            self.rows.problem(PROVIDER, self.registry, repository, "Image.list", f"{digest} tags", reason)
        return name or None

    def _add_details(self, record, repository, digest, created_at, config, layers, blobs) -> None:
        key = {"provider": PROVIDER, "registry": self.registry, "repository": repository}
        image: Dict[str, Any] = {
            **key,
            "digest": digest,
            "size_bytes": _int(record.get("compressedSize"), self.rows, self.registry, repository, f"{digest} compressedSize"),
            "created_at": created_at,
            "layer_count": len(layers),
        }
        if config:
            image["config_digest"] = config.get("digest")
            image["config_size_bytes"] = blobs[0][1]
        for extra, value in record.items():
            if extra not in _IMAGE_FIELDS:
                image[snake_case(extra)] = value  # a field Yandex added later: kept as a column
        self.rows.add(IMAGES, image)
        layer_sizes = blobs[1:] if config else blobs
        for position, (layer, (layer_digest, size)) in enumerate(zip(layers, layer_sizes)):
            self.rows.add(
                IMAGE_LAYERS,
                {
                    **key,
                    "image_digest": digest,
                    "position": position,
                    "digest": layer_digest,
                    "size_bytes": size,
                    "media_type": None,  # Image.list does not say
                    "blob_id": layer.get("id"),
                    "urls": _json_text(layer.get("urls") or []),
                },
            )
        self.rows.add(
            YANDEX_IMAGES,
            {
                "registry": self.registry,
                "repository": repository,
                "digest": digest,
                "image_id": record.get("id"),
                "registry_id": self.registry_id,
                "name": record.get("name"),
                "config_blob_id": config.get("id") if config else None,
                "config_urls": _json_text(config.get("urls") or []) if config else None,
            },
        )

    def _add_tag(self, repository: str, tag: str, digest: str, created_at: Optional[datetime]) -> None:
        row = tag_row(PROVIDER, self.registry, repository, tag, digest)
        earlier = self._tags.get(row["tag_key"])
        if earlier is not None and earlier[1]["digest"] != digest:
            # a tag listed on two images (it moved while the pages were read): the newer image has it
            self.rows.problem(PROVIDER, self.registry, repository, "Image.list", tag, f"tag listed on {earlier[1]['digest']} and {digest}")
            if earlier[0] is not None and created_at is not None and earlier[0] > created_at:
                return
        self._tags[row["tag_key"]] = (created_at, row)

    def finish(self, repository_ids: Dict[str, str], repositories: Optional[List[str]] = None) -> None:
        """Tag rows, repository rows and the scope markers, once the unit was read in full.

        Args:
            repository_ids: Repository.list's name -> id (repositories without images included).
            repositories: The repositories this unit covered (None: the whole registry).
        """
        self.rows.extend(TAGS, (row for _, row in self._tags.values()))
        names = set(self.totals) | set(repository_ids if repositories is None else [])
        if repositories is not None:
            names |= {name for name in repositories if name in repository_ids}
        for name in sorted(names):
            totals = self.totals.get(name, RepositoryTotals())
            self.rows.add(
                REPOSITORIES,
                {
                    "provider": PROVIDER,
                    "registry": self.registry,
                    "repository": name,
                    "image_count": totals.image_count,
                    "size_bytes": sum(totals.blobs.values()),
                    "updated_at": totals.updated_at,
                    "repository_id": repository_ids.get(name),
                },
            )
        if repositories is None:
            self.rows.add(TAGS, scope_marker(PROVIDER, self.registry))
        else:
            for name in repositories:
                self.rows.add(TAGS, scope_marker(PROVIDER, self.registry, name))


@dataclass
class Unit:
    """What one worker reads: a whole registry, or some of its repositories."""

    registry_id: str
    repository_ids: Dict[str, Optional[str]]  # Repository.list: repository -> id
    repositories: Optional[List[str]] = None  # None: the whole registry


class UnitLoader:
    """Reads one unit with its own API session and returns its arrow tables."""

    def __init__(self, api: YandexApi, known: Callable[[str, str], Set[str]]) -> None:
        self.api = api
        self.known = known

    def load(self, unit: Unit) -> List[Any]:
        rows = Rows()
        mapper = UnitMapper(unit.registry_id, self.known, rows)
        tables: List[Any] = []

        def read(pages: Iterator[List[Dict[str, Any]]]) -> None:
            for page in pages:
                for record in page:
                    mapper.add_image(record)
                # image and layer rows leave as arrow tables page by page (compact); tags and
                # repository totals wait for the end of the unit
                tables.extend(rows.emit_all())

        if unit.repositories is None:
            read(self.api.images(unit.registry_id))
        else:
            for repository in unit.repositories:
                try:
                    read(self.api.images(unit.registry_id, repository))
                except NotFoundError:
                    # deleted between Repository.list and now: it has no images, its tags are closed
                    log.warning("yandex %s: repository %s vanished while it was read", registry_ref(unit.registry_id), repository)
        mapper.finish(unit.repository_ids, unit.repositories)
        tables.extend(rows.emit_all())
        return tables


def repository_ids(api: YandexApi, registry_id: str) -> Dict[str, Optional[str]]:
    """Repository.list of a registry: repository (without the registry id) -> repository id."""
    ids: Dict[str, Optional[str]] = {}
    for page in api.repositories(registry_id):
        for record in page:
            if record.get("name"):
                ids[repository_of(str(record["name"]), registry_id)] = record.get("id")
    return ids


def select_units(registries: Dict[str, Dict[str, Optional[str]]], repository_filter: List[str]) -> List[Unit]:
    """One unit per registry, or per registry with the filtered repositories it holds.

    Args:
        registries: registry id -> its repositories (Repository.list) in the order to read them.
        repository_filter: `crp…/app` (the API's full name, optionally after `cr.yandex/`) for one
            registry's repository, or a bare `app` for that repository in any selected registry.

    Raises:
        NotFoundError: A filter entry names a repository that none of its registries holds.
    """
    if not repository_filter:
        return [Unit(registry_id, ids) for registry_id, ids in registries.items()]
    wanted: Dict[str, List[str]] = {registry_id: [] for registry_id in registries}
    for entry in repository_filter:
        name = entry[len(PULL_HOST) + 1 :] if entry.startswith(PULL_HOST + "/") else entry
        head, _, rest = name.partition("/")
        targets, repository = ([head], rest) if head in registries and rest else (list(registries), name)
        found = [registry_id for registry_id in targets if repository in registries[registry_id]]
        if not found:
            where = ", ".join(registry_ref(r) for r in targets)
            raise NotFoundError(
                PROVIDER,
                "Repository.list",
                f"repository {repository!r} (from the repositories setting {entry!r}) is not in {where}",
                registry=where if len(targets) == 1 else None,
            )
        for registry_id in found:
            if repository not in wanted[registry_id]:
                wanted[registry_id].append(repository)
    return [Unit(registry_id, registries[registry_id], names) for registry_id, names in wanted.items() if names]


def loaded_registries(folders: List[str]) -> Set[str]:
    """Ids of the registries earlier loads found in these folders (from `yandex_registries`)."""
    import dlt

    try:
        pipeline = dlt.current.pipeline()
        with pipeline.sql_client() as client:
            if not client.has_dataset():
                return set()
            table = client.make_qualified_table_name(YANDEX_REGISTRIES.name)
            marks = ", ".join(["%s"] * len(folders))
            rows = client.execute_sql(f"SELECT registry_id FROM {table} WHERE folder_id IN ({marks})", *folders)
    except Exception as exc:  # outside a pipeline, or a first load: nothing was loaded
        log.debug("no loaded yandex registries: %s", exc)
        return set()
    return {registry_id for (registry_id,) in rows or ()}


__all__ = [
    "YandexApi",
    "UnitLoader",
    "UnitMapper",
    "Unit",
    "select_units",
    "repository_ids",
    "loaded_registries",
    "as_list",
    "registry_row",
    "registry_ref",
    "repository_of",
    "YANDEX_REGISTRIES",
    "YANDEX_IMAGES",
]
