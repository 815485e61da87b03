"""Yandex Container Registry: the REST calls, and the mapping of API records to unified rows.

Calls (all `GET`, `nextPageToken` paging with pageSize 1000, a repeating token stops the walk):
`/registries?folderId` (Registry.list), `/registries/{id}` (Registry.get),
`/repositories?registryId` (Repository.list), `/images?registryId|repositoryName` (Image.list).
Image.list gives everything about an image in one record (blobs, tags, createdAt), so there is
no per-image call to save: images already loaded are simply not emitted again, and tags and
repository rows only for repositories whose listing fingerprint changed (`UnitMapper.finish`).
"""

from __future__ import annotations

import hashlib
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

from ..concurrency import prefetched
from ..errors import NotFoundError
from ..http import GuardedCursorPaginator, build_client, get_json, paginate
from ..model import (
    IMAGE_LAYERS,
    IMAGES,
    LOAD_PROBLEMS,
    REPOSITORIES,
    TAGS,
    TIMESTAMP,
    Rows,
    emit_arrow,
    from_columns,
    provider_table,
    scope_marker,
    tag_columns,
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
        """Every page of a `nextPageToken` listing (a repeating token stops the walk with an error)."""
        yield from paginate(
            self.client(), path, provider=PROVIDER, call=call, registry=registry,
            params={**params, "pageSize": self.page_size},
            paginator=GuardedCursorPaginator("nextPageToken", "pageToken", PROVIDER, call),
            data_selector=selector, describe=describe_status, counter=self._count, objects=True,
        )

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
# `json.dumps(value, sort_keys=True, separators=…)` built an encoder per call: a tenth of the
# mapping's CPU went to constructing encoders for layers' `urls` (same text, tested)
_SORTED_COMPACT_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


def _json_text(value: Any) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, list) and not value:
        return "[]"
    return _SORTED_COMPACT_JSON.encode(value)


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




_IMAGE_FIELDS = frozenset({"id", "name", "digest", "compressedSize", "config", "layers", "tags", "createdAt"})

# bump when the mapping of a listing changes: every repository is then emitted again once
FINGERPRINT_VERSION = "yandex-listing-1"
# prefixes the fingerprint of a repository whose listing had problems: when a bad value is
# fixed without anything hashed changing (a blob size), the clean fingerprint differs from it and
# the repository is emitted again; the same problems again give the same rows, and are skipped
_DIRTY = "problems:"
_HASH_MODULUS = 1 << 128


def _image_hash(digest: Any, created_at: Any, tags: Any) -> int:
    """What of one Image.list record a later run must see unchanged to skip its repository:
    the digest (it fixes the blobs and sizes: content addressed), createdAt and the tags."""
    text = f"{digest}\x1f{created_at!r}\x1f{tags!r}"
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=16).digest(), "little")


@dataclass
class RepositoryListing:
    """What one unit's listing told about a repository (Repository.list gives only its name
    and id): the repository row's totals, its tags, and an order-free hash of its images.

    Only small tuples are held (never the records): the tags as tag -> (digest, createdAt),
    the digests seen, and the distinct blobs (hashed) with their total size.
    """

    digests: Set[str] = field(default_factory=set)
    tags: Dict[str, Tuple[str, Optional[datetime]]] = field(default_factory=dict)
    # the distinct blobs stored, as the hashes of their digests (a registry's listing is held
    # until its end: the digests themselves were 120 bytes each, half a million per 100,000
    # images), and the sum of their sizes
    blob_hashes: Set[int] = field(default_factory=set)
    size_bytes: int = 0
    updated_at: Optional[datetime] = None
    hash: int = 0  # sum of the images' hashes: the same whatever order the pages list them in
    unknown: bool = False  # an image the destination does not hold
    problems: bool = False  # a record of it was loaded only in part

    def fingerprint(self, repository_id: Optional[str]) -> str:
        text = f"{FINGERPRINT_VERSION}\x1f{repository_id!r}\x1f{len(self.digests)}\x1f{self.hash % _HASH_MODULUS:x}"
        fingerprint = hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
        return _DIRTY + fingerprint if self.problems else fingerprint


# columns the unified tables lack, kept as extra TEXT columns (as the model's `batch()` keeps a
# dict row's unknown keys): the blob id and download URLs of each layer
_LAYER_EXTRAS = ("blob_id", "urls")


class _DetailColumns:
    """The `images`, `images__layers` and `yandex_images` rows of new digests, kept as one list
    per column: a dict per row, then `batch()` turning them into columns, cost a third of the
    mapping. `arrow_tables()` builds the same tables `batch()` would (types, extra columns)."""

    TABLES = (IMAGES, IMAGE_LAYERS, YANDEX_IMAGES)

    def __init__(self) -> None:
        self.columns: Dict[str, Dict[str, List[Any]]] = {
            table.name: {name: [] for name in table.column_names} for table in self.TABLES
        }
        self.columns[IMAGE_LAYERS.name].update({name: [] for name in _LAYER_EXTRAS})

    def arrow_tables(self) -> Iterator[Tuple[Any, pa.Table]]:
        for table in self.TABLES:
            columns = self.columns[table.name]
            count = max(len(values) for values in columns.values())
            if not count:
                continue
            yield table, from_columns(table, columns, count)
            for values in columns.values():
                values.clear()

    def move_into(self, rows: Rows) -> None:
        """The same rows as dicts into `rows` (for callers that inspect dict rows)."""
        for table in self.TABLES:
            columns = self.columns[table.name]
            names = [name for name, values in columns.items() if values]
            for values in zip(*(columns[name] for name in names)):
                rows.add(table, dict(zip(names, values)))
            for values in columns.values():
                values.clear()


class UnitMapper:
    """Maps the Image.list records of one unit (a registry, or one repository) to rows.

    Image and layer rows of digests the destination lacks are made as the records come; tags
    and repository rows wait for `finish()` (a registry's listing names a repository's images
    on any page). With `previous` (the fingerprints of the last load: an incremental run),
    `finish()` emits only the repositories whose listing changed, each under its own scope
    marker; without it, every repository under one registry marker.
    """

    def __init__(
        self,
        registry_id: str,
        known: Callable[[str, str], Set[str]],
        rows: Rows,
        previous: Optional[Dict[str, Optional[str]]] = None,
        arrow: bool = False,
    ) -> None:
        """
        Args:
            registry_id: The registry the unit reads.
            known: (registry, repository) -> the digests the destination holds.
            rows: Where tag, repository and problem rows go (and every row without `arrow`).
            previous: The fingerprints of the last load (None: emit every repository).
            arrow: Keep the image and layer rows as columns for `emit_all()` instead of
                adding dict rows to `rows`.
        """
        self.registry_id = registry_id
        self.arrow = arrow
        self.registry = registry_ref(registry_id)
        self.known = known
        self.rows = rows
        self.previous = previous
        self.listings: Dict[str, RepositoryListing] = {}
        self.details = _DetailColumns()

    def _listing(self, repository: str) -> RepositoryListing:
        listing = self.listings.get(repository)
        if listing is None:
            listing = self.listings[repository] = RepositoryListing()
        return listing

    def add_image(self, record: Dict[str, Any]) -> None:
        name, digest = record.get("name"), record.get("digest")
        if not name or not digest:
            self.rows.problem(PROVIDER, self.registry, None, "Image.list", record.get("id"), "an image without a name or digest")
            if name:
                self._listing(repository_of(str(name), self.registry_id)).problems = True
            return
        repository = repository_of(str(name), self.registry_id)
        listing = self._listing(repository)
        if digest in listing.digests:
            return  # listed twice (pages shifted while a push happened): the first is as good
        listing.digests.add(digest)
        problems = self.rows.count(LOAD_PROBLEMS)
        created_raw, tags_raw = record.get("createdAt"), record.get("tags")
        listing.hash += _image_hash(digest, created_raw, tags_raw)
        created_at = _time(created_raw, self.rows, self.registry, repository, "Image.list", f"{digest} createdAt")
        config = record.get("config") if isinstance(record.get("config"), dict) else None
        layers, skipped = objects_in(self._list(record, "layers", repository, digest))
        if skipped:
            self.rows.problem(PROVIDER, self.registry, repository, "Image.list", f"{digest} layers",
                              f"layers: {skipped} of {skipped + len(layers)} entries are not objects; skipped")
        blobs = [(b.get("digest"), self._size(b.get("size"), repository, digest)) for b in ([config] if config else []) + layers]
        for blob, size in blobs:
            if blob and size is not None and hash(blob) not in listing.blob_hashes:
                listing.blob_hashes.add(hash(blob))
                listing.size_bytes += size
        if created_at and (listing.updated_at is None or created_at > listing.updated_at):
            listing.updated_at = created_at
        for tag in self._list(record, "tags", repository, digest) if tags_raw is not None else ():
            tag_name = self._tag_name(tag, repository, digest)
            if tag_name:
                self._add_tag(listing, repository, tag_name, digest, created_at)
        if digest not in self.known(self.registry, repository):
            listing.unknown = True
            self._add_details(record, repository, digest, created_at, config, layers, blobs)
        if self.rows.count(LOAD_PROBLEMS) != problems:
            listing.problems = True

    def _size(self, value: Any, repository: str, digest: str) -> Optional[int]:
        if type(value) is str and value.isdigit() and value.isascii():
            return int(value)  # what Yandex sends (int64 as a string): skip the general parser
        return _int(value, self.rows, self.registry, repository, f"{digest} blob size")

    def _list(self, record: Dict[str, Any], field_name: str, repository: str, digest: str) -> List[Any]:
        """A list field of an image record; anything else is reported and read as empty."""
        try:
            return to_list(record.get(field_name))
        except BadValue as exc:
            self.rows.problem(PROVIDER, self.registry, repository, "Image.list", f"{digest} {field_name}", f"{field_name}: {exc}; skipped")
            return []

    def _tag_name(self, tag: Any, repository: str, digest: str) -> Optional[str]:
        """One entry of `tags` as a tag name; an object, a list or an empty name is reported and skipped."""
        if type(tag) is str and tag:
            return tag
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
        extra = [key for key in record if key not in _IMAGE_FIELDS]
        images = self.details.columns[IMAGES.name]
        if extra:
            # a field Yandex added later: kept as a column (the model's dict rows know how)
            image: Dict[str, Any] = {"provider": PROVIDER, "registry": self.registry, "repository": repository, "digest": digest}
            image.update(self._image_values(record, repository, digest, created_at, config, layers, blobs))
            for key in extra:
                image[snake_case(key)] = record[key]
            self.rows.add(IMAGES, image)
        else:
            for column, value in (("provider", PROVIDER), ("registry", self.registry), ("repository", repository), ("digest", digest)):
                images[column].append(value)
            for column, value in self._image_values(record, repository, digest, created_at, config, layers, blobs).items():
                images[column].append(value)
        layer_sizes = blobs[1:] if config else blobs
        columns = self.details.columns[IMAGE_LAYERS.name]
        count = len(layers)
        if count:
            columns["provider"].extend([PROVIDER] * count)
            columns["registry"].extend([self.registry] * count)
            columns["repository"].extend([repository] * count)
            columns["image_digest"].extend([digest] * count)
            columns["position"].extend(range(count))
            columns["digest"].extend([blob for blob, _ in layer_sizes])
            columns["size_bytes"].extend([size for _, size in layer_sizes])
            columns["blob_id"].extend([layer.get("id") for layer in layers])
            columns["urls"].extend([_json_text(layer.get("urls") or []) for layer in layers])
        own = self.details.columns[YANDEX_IMAGES.name]
        own["registry"].append(self.registry)
        own["repository"].append(repository)
        own["digest"].append(digest)
        own["image_id"].append(record.get("id"))
        own["registry_id"].append(self.registry_id)
        own["name"].append(record.get("name"))
        own["config_blob_id"].append(config.get("id") if config else None)
        own["config_urls"].append(_json_text(config.get("urls") or []) if config else None)

    def _image_values(self, record, repository, digest, created_at, config, layers, blobs) -> Dict[str, Any]:
        """The `images` columns besides the key that Image.list fills."""
        return {
            "size_bytes": _int(record.get("compressedSize"), self.rows, self.registry, repository, f"{digest} compressedSize"),
            "created_at": created_at,
            "layer_count": len(layers),
            "config_digest": config.get("digest") if config else None,
            "config_size_bytes": blobs[0][1] if config else None,
        }

    def _add_tag(self, listing: RepositoryListing, repository: str, tag: str, digest: str, created_at: Optional[datetime]) -> None:
        earlier = listing.tags.get(tag)
        if earlier is not None and earlier[0] != digest:
            # a tag listed on two images (it moved while the pages were read): the newer image has it
            self.rows.problem(PROVIDER, self.registry, repository, "Image.list", tag, f"tag listed on {earlier[0]} and {digest}")
            if earlier[1] is not None and created_at is not None and earlier[1] > created_at:
                return
        listing.tags[tag] = (digest, created_at)

    def emit_all(self) -> Iterator[Any]:
        """The rows made so far, as marked arrow tables (the detail columns, then the dict rows)."""
        if self.arrow:
            for table, arrow in self.details.arrow_tables():
                yield emit_arrow(table, arrow)
        else:
            self.details.move_into(self.rows)
        yield from self.rows.emit_all()

    def finish(self, repository_ids: Dict[str, Optional[str]], repositories: Optional[List[str]] = None) -> Dict[str, str]:
        """Tag rows, repository rows and the scope markers, once the unit was read in full.

        Args:
            repository_ids: Repository.list's name -> id (repositories without images included).
            repositories: The repositories this unit covered (None: the whole registry).

        Returns:
            The fingerprint of every repository the unit saw (to remember for the next run).
        """
        names = set(self.listings) | set(repository_ids if repositories is None else [])
        if repositories is not None:
            names |= {name for name in repositories if name in repository_ids}
        incremental = self.previous is not None
        fingerprints: Dict[str, str] = {}
        emitted: Set[str] = set()
        for name in sorted(names):
            listing = self.listings.get(name) or RepositoryListing()
            fingerprint = fingerprints[name] = listing.fingerprint(repository_ids.get(name))
            if incremental and not listing.unknown and self.previous.get(name) == fingerprint:  # type: ignore[union-attr]
                continue  # listed as at the last load, every image in the destination: its rows still hold
            emitted.add(name)
            pairs = [(tag, digest) for tag, (digest, _) in listing.tags.items()]
            self.rows.add_columns(TAGS, tag_columns(PROVIDER, self.registry, name, pairs), len(pairs))
            self.rows.add(
                REPOSITORIES,
                {
                    "provider": PROVIDER,
                    "registry": self.registry,
                    "repository": name,
                    "image_count": len(listing.digests),
                    "size_bytes": listing.size_bytes,
                    "updated_at": listing.updated_at,
                    "repository_id": repository_ids.get(name),
                },
            )
            if incremental and repositories is None:
                self.rows.add(TAGS, scope_marker(PROVIDER, self.registry, name))
        if repositories is None:
            if not incremental:
                self.rows.add(TAGS, scope_marker(PROVIDER, self.registry))
        else:
            for name in repositories:
                if name in emitted or name not in names:
                    self.rows.add(TAGS, scope_marker(PROVIDER, self.registry, name))
        if not self.arrow:
            self.details.move_into(self.rows)
        return fingerprints


@dataclass
class Unit:
    """What one worker reads: a whole registry, or some of its repositories."""

    registry_id: str
    repository_ids: Dict[str, Optional[str]]  # Repository.list: repository -> id
    repositories: Optional[List[str]] = None  # None: the whole registry
    # the fingerprints of the last load (ListingState) when the registry is read incrementally
    previous: Optional[Dict[str, Optional[str]]] = None


@dataclass
class UnitResult:
    tables: List[Any]  # marked arrow tables, ready to yield
    fingerprints: Dict[str, str]  # repository -> fingerprint of its listing


class UnitLoader:
    """Reads one unit with its own API session, handing out its arrow tables as they are made."""

    def __init__(self, api: YandexApi, known: Callable[[str, str], Set[str]]) -> None:
        self.api = api
        self.known = known

    def stream(self, unit: Unit) -> Iterator[Any]:
        """The unit's image and layer tables page by page, then its `UnitResult` (the tag and
        repository tables, which need the whole listing, and the fingerprints) last. A registry
        is never held in memory: a page's tables leave before the next page is mapped."""
        mapper = UnitMapper(unit.registry_id, self.known, Rows(), unit.previous, arrow=True)

        def read(pages: Iterator[List[Dict[str, Any]]]) -> Iterator[Any]:
            for page in prefetched(pages, "yandex-prefetch"):
                for record in page:
                    mapper.add_image(record)
                # image and layer rows leave as arrow tables page by page (compact); tags and
                # repository rows wait for the end of the unit
                yield from mapper.emit_all()

        if unit.repositories is None:
            yield from read(self.api.images(unit.registry_id))
        else:
            for repository in unit.repositories:
                try:
                    yield from read(self.api.images(unit.registry_id, repository))
                except NotFoundError:
                    # deleted between Repository.list and now: it has no images, its tags are closed
                    log.warning("yandex %s: repository %s vanished while it was read", registry_ref(unit.registry_id), repository)
        fingerprints = mapper.finish(unit.repository_ids, unit.repositories)
        yield UnitResult(list(mapper.emit_all()), fingerprints)


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
    "UnitResult",
    "RepositoryListing",
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
