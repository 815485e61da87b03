"""Naver Cloud (NCP) Container Registry: registries, repositories, images, platform children and
tag history, through the NCP API gateway with signature v2.

Calls: `GET /repositories` (registries; skipped when `registries` is configured) →
`GET /repositories/{registry}` (NCP "images", i.e. our repositories, with `last_updated`) →
`GET /repositories/{registry}/{imageName}/tags` (tags with their per-platform `images[]`) for the
repositories whose `last_updated` moved since the last successful load (all of them on a first
load or a full refresh). Every listing is paged (`page`, `pagesize`, 1-based) to its last page.
An image (and its `images__manifests` links) is emitted once per digest: digests the destination
already holds are skipped (`KnownImages`), so append-only destinations (Parquet files) get no
duplicates and the rows stay as first loaded (`last_pulled_at` included, as for ECR).
Configuration lives under `[sources.ncp]`; the keys under `[sources.ncp]` in secrets.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Dict, Iterator, List, Optional, Sequence, Set, Tuple

import dlt
from dlt.sources import DltResource

from ..concurrency import plan_tasks, read_tasks, worker_processes
from ..errors import ConfigError, register_secret
from ..model import TAGS, Rows, emit, scope_marker
from ..state import KnownImages, RepositoryStamps
from ..values import as_list
from .helpers import (
    NCP_REGISTRIES,
    ApiSpec,
    NcpApi,
    TagTask,
    read_task,
    registry_endpoint,
    registry_row,
    repository_rows,
)
from .settings import (
    DEFAULT_BASE_URL,
    DEFAULT_CONCURRENCY,
    DEFAULT_PAGE_SIZE,
    EMIT_ROWS,
    MAX_AUTO_PROCESSES,
    PROCESS_MIN_REPOSITORIES,
    PROVIDER,
    REGION_PREFIXES,
    REPOSITORIES_PER_TASK,
)


@dlt.source(name="ncp", max_table_nesting=0)
def ncp_source(
    access_key: str = dlt.secrets.value,
    secret_key: str = dlt.secrets.value,
    region: str = "kr",
    registries: Optional[Any] = None,
    base_url: str = DEFAULT_BASE_URL,
    concurrency: int = DEFAULT_CONCURRENCY,
    page_size: int = DEFAULT_PAGE_SIZE,
    full_refresh: bool = False,
    processes: int = 0,
    request_counter: Optional[Counter] = None,
) -> Sequence[DltResource]:
    """The Container Registry inventory of one NCP region.

    Args:
        access_key: API access key (secret; `SOURCES__NCP__ACCESS_KEY`).
        secret_key: API secret key (secret; `SOURCES__NCP__SECRET_KEY`).
        region: `kr` (Korea), `sgn` (Singapore) or `jpn` (Japan): the API path of the region.
        registries: Only these registries (names, one or a list); every registry of the region
            when empty.
        base_url: The API gateway (`https://ncr.apigw.ntruss.com`), or the emulator.
        concurrency: Calls in flight, over all worker processes (16: ~2 ListTags a repository
            at 20 ms of latency kept 8 waiting). Lower it if the run summary shows retries.
        page_size: Results asked for per page.
        full_refresh: Read the tags of every repository, changed or not.
        processes: Worker processes reading tags when a registry has many repositories to read
            (each process runs its own calls and builds arrow tables; Python maps rows on one
            core per process). 0: two per core, at most 4; 1: read in this process only.
        request_counter: A Counter that receives the number of calls per operation.

    Returns:
        The `registry_list` (not loaded itself) and the `ncp_inventory` transformer, which emits
        the `repositories`, `images`, `images__manifests`, `tags`, `ncp_registries`, `ncp_images`,
        `ncp_tags` and `load_problems` tables.
    """
    register_secret(access_key)
    register_secret(secret_key)
    region = (region or "").strip().lower()
    if region not in REGION_PREFIXES:
        raise ConfigError(
            PROVIDER, "configuration", f"region {region!r} is not one of {sorted(REGION_PREFIXES)}",
            hint="Set [sources.ncp] region to kr, sgn or jpn.",
        )
    if not access_key or not secret_key:
        raise ConfigError(PROVIDER, "configuration", "access_key and secret_key must not be empty")
    counter = request_counter if request_counter is not None else Counter()
    spec = ApiSpec(access_key, secret_key, region, base_url or DEFAULT_BASE_URL, int(page_size))
    api = spec.build(counter)
    reader = TagReader(spec, api, counter, concurrency, worker_processes(processes, MAX_AUTO_PROCESSES))
    configured = as_list(registries)
    stamps = RepositoryStamps(full_refresh)
    known = KnownImages(PROVIDER)

    @dlt.resource(name="registry_list", selected=False)
    def registry_list() -> Iterator[List[Dict[str, Any]]]:
        """The registries to read: the configured names, or every registry of the region."""
        if configured:
            yield [{"name": name, "_listed": False} for name in configured]
            return
        # one item for the whole listing (a region has a handful of registries): dlt evaluates
        # transformer calls round-robin, so the end-of-listing check must come in the same item
        listing = [{**doc, "_listed": True} for page in api.list_registries() for doc in page if doc.get("name")]
        # after the listing: registries loaded before and absent now are gone
        yield listing + [{"_listing_done": True}]

    seen_registries: set = set()

    @dlt.transformer(data_from=registry_list, name="ncp_inventory")
    def ncp_inventory(page: List[Dict[str, Any]]) -> Iterator[Any]:
        """Per registry: its repositories, then the tags of those that changed."""
        for doc in page:
            if doc.get("_listing_done"):
                yield from _close_vanished_registries(stamps, seen_registries)
                continue
            seen_registries.add(registry_endpoint(doc["name"], api.region, doc if doc.get("_listed") else None))
            yield from _load_registry(reader, doc, stamps, known)

    return registry_list, ncp_inventory


class TagReader:
    """Reads the tags of a registry's repositories, `concurrency` calls at once: in this
    process's threads, or in worker processes when there are many repositories."""

    def __init__(self, spec: ApiSpec, api: NcpApi, counter: Counter, concurrency: int, workers: int) -> None:
        self.spec, self.api, self.counter = spec, api, counter
        self.concurrency, self.workers = max(1, concurrency), workers

    def read(self, registry: str, name: str, known: Dict[str, Set[str]]) -> Iterator[Tuple[List[str], Rows]]:
        """(repositories, their rows) per task, in the order of `known`'s keys."""
        repositories = list(known)
        plan = plan_tasks(len(repositories), self.workers, self.concurrency, PROCESS_MIN_REPOSITORIES, REPOSITORIES_PER_TASK)
        tasks = [
            TagTask(self.spec, registry, name, {r: known[r] for r in repositories[i : i + plan.size]}, plan.threads)
            for i in range(0, len(repositories), plan.size)
        ]
        local_api = lambda task: self.api  # noqa: E731
        for task, rows, _ in read_tasks(read_task, tasks, local_api, self.counter, self.concurrency, plan.workers):
            yield list(task.known), rows


def _load_registry(reader: TagReader, doc: Dict[str, Any], stamps: RepositoryStamps, known: KnownImages) -> Iterator[Any]:
    """One registry: the repository listing (every page), tags of changed repositories, and
    the scope markers that let the tag history close only what was read."""
    api = reader.api
    name = doc["name"]
    listed = doc.pop("_listed")
    registry = registry_endpoint(name, api.region, doc if listed else None)
    rows = Rows()
    if listed:  # a configured name tells nothing about the registry: keep what a listing told
        rows.add(NCP_REGISTRIES, registry_row(doc, registry, api.region, rows))
        yield from rows.emit_all()

    stamp_of: Dict[str, Any] = {}
    for images in api.list_images(name):
        for image in images:
            repository = repository_rows(image, registry, name, rows)
            if repository is not None:
                stamp_of[repository] = image.get("last_updated")
        yield from rows.emit_all()

    changed = stamps.changed_among(registry, stamp_of)
    vanished = sorted(stamps.repositories_of(registry) - set(stamp_of))
    # what is loaded is read here, in the extract thread: the workers have no pipeline context
    loaded = {repository: known.of(registry, repository) for repository in changed}

    # the repositories leave as a few large arrow tables: dlt's cost is per yielded item (it
    # checks each item's table hints), and a table per repository made that most of the extract
    batch = Rows()
    partial = len(changed) < len(stamp_of)
    read: List[str] = []
    for repositories, mapped in reader.read(registry, name, loaded):
        batch.merge(mapped)
        if partial:
            # a partial read: close only these repositories' tags that are gone
            for repository in repositories:
                batch.add(TAGS, scope_marker(PROVIDER, registry, repository))
        read.extend(repositories)
        if len(batch) >= EMIT_ROWS:
            yield from batch.emit_all()
    # remembered here, in the extract thread, once every changed repository was read; dlt
    # commits it only with a successful load
    stamps.remember_all(registry, [(repository, stamp_of[repository]) for repository in read])

    if not partial:
        # every repository read in full: tags of repositories that vanished close too
        batch.add(TAGS, scope_marker(PROVIDER, registry))
    else:
        for repository in vanished:
            batch.add(TAGS, scope_marker(PROVIDER, registry, repository))
    yield from batch.emit_all()
    for repository in vanished:
        stamps.forget(registry, repository)


def _close_vanished_registries(stamps: RepositoryStamps, seen: set) -> Iterator[Any]:
    """A registry an earlier load read that the region no longer lists: close its tag history."""
    for registry in sorted(stamps.registries() - seen):
        yield emit(TAGS, [scope_marker(PROVIDER, registry)])
        for repository in stamps.repositories_of(registry):
            stamps.forget(registry, repository)
