"""AWS ECR: repositories, images, layers, index children and tag history, through boto3.

Calls: DescribeRepositories → ListImages (every page, maxResults 1000, the tag/image status
filters) → DescribeImages and BatchGetImage for digests not loaded before (100 ids a call).
Credentials come from boto3's default chain; throttling and 5xx are retried by botocore's
retry modes. Configuration lives under `[sources.ecr]`.
"""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any, Dict, Iterator, List, Optional, Sequence

import dlt
from dlt.sources import DltResource

from ..concurrency import TaskPlan, plan_tasks, prefetched, read_tasks, start_worker_server, worker_processes
from ..errors import ConfigError
from ..model import TAGS, Rows, emit, scope_marker
from ..state import KnownImages, ListingState
from ..values import as_list
from .helpers import (
    ApiSpec,
    RepositoryTask,
    read_repositories,
    registry_of,
)
from .settings import (
    DEFAULT_CONCURRENCY,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_RETRY_MODE,
    EMIT_ROWS,
    IMAGE_STATUSES,
    MAX_AUTO_PROCESSES,
    PROCESS_MIN_REPOSITORIES,
    PROVIDER,
    REPOSITORIES_PER_TASK,
    TAG_STATUSES,
)




@dlt.source(name="ecr", max_table_nesting=0)
def ecr_source(
    regions: Any = dlt.config.value,
    registry_ids: Optional[Any] = None,
    repositories: Optional[Any] = None,
    tag_status: str = "ANY",
    image_status: str = "ANY",
    endpoint_url: Optional[str] = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    retry_mode: str = DEFAULT_RETRY_MODE,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    processes: int = 0,
    request_counter: Optional[Counter] = None,
) -> Sequence[DltResource]:
    """The ECR inventory of one or more regions.

    Args:
        regions: AWS regions to read, one or a list (`["us-east-1", "eu-west-1"]`).
        registry_ids: Account ids of the registries to read; the caller's own registry when empty.
        repositories: Only these repositories (their tag history outside them is left alone).
        tag_status: ListImages filter: `TAGGED`, `UNTAGGED` or `ANY`.
        image_status: ListImages filter: `ACTIVE`, `ARCHIVED`, `ACTIVATING` or `ANY`.
        endpoint_url: Another endpoint (a VPC endpoint, or the emulator).
        concurrency: Repositories read at once (bounded by ECR's rate limits; throttling is retried).
        retry_mode: botocore retry mode, `standard` or `adaptive`.
        max_attempts: botocore attempts per call, retries included.
        processes: Worker processes reading repositories when a page holds many (each process
            runs its own calls and builds arrow tables; Python maps rows on one core per
            process). 0: two per core, at most 4; 1: read in this process only.
        request_counter: A Counter that receives the number of calls per operation.

    Returns:
        The `registry_list` (the APIs to read; not loaded itself) and the `images` transformer, which emits the
        `repositories`, `images`, `images__layers`, `images__manifests`, `tags` and
        `load_problems` tables.
    """
    region_list = as_list(regions)
    if not region_list:
        raise ConfigError(PROVIDER, "configuration", "no regions configured", hint="Set [sources.ecr] regions.")
    tag_status, image_status = tag_status.upper(), image_status.upper()
    if tag_status not in TAG_STATUSES:
        raise ConfigError(PROVIDER, "configuration", f"tag_status {tag_status!r} is not one of {TAG_STATUSES}")
    if image_status not in IMAGE_STATUSES:
        raise ConfigError(PROVIDER, "configuration", f"image_status {image_status!r} is not one of {IMAGE_STATUSES}")
    repository_filter = as_list(repositories)
    counter = request_counter if request_counter is not None else Counter()
    specs = [
        ApiSpec(region, registry_id, endpoint_url or None, retry_mode, max_attempts, max(10, concurrency * 2))
        for region in region_list
        for registry_id in (as_list(registry_ids) or [None])
    ]
    apis = {spec: spec.build(counter) for spec in specs}
    workers = worker_processes(processes, MAX_AUTO_PROCESSES)
    # an UNTAGGED-only listing sees no tags, so it must not retire any history
    tags_complete = tag_status != "UNTAGGED"
    known = KnownImages(PROVIDER)
    listings = ListingState()

    @dlt.resource(name="registry_list", selected=False)
    def registry_list() -> Iterator[List[ApiSpec]]:
        """The APIs (region, registry id) to read, as one item: `images` reads them one after
        another in one call. dlt reads the transformer calls of several items at once (round
        robin), so an item per DescribeRepositories page had each page read by its own worker
        processes at the same time: calls in flight and memory multiplied by the pages."""
        yield list(apis)

    @dlt.transformer(data_from=registry_list, name="images")
    def images(specs: List[ApiSpec]) -> Iterator[Any]:
        """Per API, DescribeRepositories page by page; per repository (overlapped): tags, then
        details of new digests. Repositories whose listing did not change since the last load
        give no rows and make no detail calls."""
        listings.begin()
        if _expect_worker_processes():
            # the workers' forkserver imports while the first page is listed (a no-op rerun of
            # 2,000 repositories waited ~0.7 s for it before its first ListImages)
            start_worker_server([read_repositories.__module__])
        for spec in specs:
            yield from _read_api(spec)

    def _expect_worker_processes() -> bool:
        """Whether `plan_tasks` will likely choose worker processes, which it decides from the
        first page, after the listing: asked here of the filter's size, else of the largest
        registry of the last load. A first load is taken as large: its forkserver costs ~0.6
        CPU-s once, where a scheduled rerun of a small registry would pay it each run."""
        expected = len(repository_filter) if repository_filter else listings.most_repositories()
        if expected is None:
            return workers > 1
        return plan_tasks(expected, workers, concurrency, PROCESS_MIN_REPOSITORIES, REPOSITORIES_PER_TASK).workers > 1

    def _read_api(spec: ApiSpec) -> Iterator[Any]:
        # the next page is listed (in a thread) while this one's repositories are read, not after
        pages = prefetched(iter(apis[spec].list_repositories(repository_filter or None)), "registry-etl-ecr-repositories")
        first = next(pages, [])
        plan = plan_tasks(len(first), workers, concurrency, PROCESS_MIN_REPOSITORIES, REPOSITORIES_PER_TASK)
        listed: Dict[str, List[str]] = {}  # registry -> every repository name listed

        def tasks() -> Iterator[RepositoryTask]:
            """Built page by page as the workers take them: what a page's repositories already
            hold is read when its first task is needed (here, in the extract thread)."""
            for page in itertools.chain([first], pages):
                for repo in page:
                    listed.setdefault(registry_of(repo, spec.region), []).append(repo.get("repositoryName"))
                known.load_page((registry_of(r, spec.region), r.get("repositoryName")) for r in page)
                for start in range(0, len(page), plan.size):
                    yield _task(spec, page[start : start + plan.size], plan)

        # the repositories leave as a few large arrow tables: dlt's cost is per yielded item
        pending = Rows()
        read = read_tasks(read_repositories, tasks(), lambda task: apis[task.api], counter, concurrency, plan.workers)
        for task, rows, fingerprints in read:
            pending.merge(rows)
            _remember(task, fingerprints)
            if len(pending) >= EMIT_ROWS:
                yield from pending.emit_all()
        yield from pending.emit_all()
        if not repository_filter:
            for registry in sorted(listed):
                yield from _end_of_registry(registry, listed[registry])

    def _end_of_registry(registry: str, listed: List[str]) -> Iterator[Any]:
        """After a registry was listed in full: retire the tags of whatever it no longer holds."""
        if not tags_complete:
            return
        if listings.incremental(registry):
            gone = listings.forget_others(registry, listed)
            if gone:
                yield emit(TAGS, [scope_marker(PROVIDER, registry, name) for name in gone])
        else:  # a first load (or state lost): every tag of the registry was emitted
            yield emit(TAGS, [scope_marker(PROVIDER, registry)])

    def _task(spec: ApiSpec, repos: List[Dict[str, Any]], plan: TaskPlan) -> RepositoryTask:
        registry = registry_of(repos[0], spec.region)
        names = [r.get("repositoryName") for r in repos if isinstance(r.get("repositoryName"), str)]
        marked = set(names) if tags_complete and (repository_filter or listings.incremental(registry)) else set()
        return RepositoryTask(
            api=spec,
            repositories=repos,
            known={name: known.of(registry, name) for name in names},
            previous={name: listings.previous(registry, name) for name in names},
            marked=marked,
            tag_status=tag_status,
            image_status=image_status,
            threads=plan.threads,
        )

    def _remember(task: RepositoryTask, fingerprints: Dict[str, Optional[str]]) -> None:
        registry = registry_of(task.repositories[0], task.api.region)
        for name, fingerprint in fingerprints.items():
            listings.remember(registry, name, fingerprint)

    return registry_list, images

