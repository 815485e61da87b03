"""Huawei Cloud SWR (Software Repository for Container): repositories, images, layers and tag history.

Calls: `GET /v2/manage/namespaces` → `GET /v2/manage/repos?namespace=…` (offset/limit pages of
1000, bare JSON arrays, `Content-Range` totals checked) → `GET /v2/manage/namespaces/{ns}/repos/{repo}/tags`
for the repositories whose `updated_at` moved since the last successful load. Tag records carry
the manifest as a string, so images, layers and index children come without further calls.

`registry` is `swr.<region>.myhuaweicloud.com/<namespace>` (another pull host with
`registry_host`) and `repository` the repository name inside the namespace, so
`{registry}/{repository}:{tag}` is exactly SWR's pull path (the `path` field of a repository
record, kept as a column of `repositories`; a disagreeing `path` is logged as a warning).
SWR lists tagged images only: untagged manifests and the children of a manifest list have no
`images` row of their own (the children are rows of `images__manifests`).

Auth: AK/SK request signing (`access_key`, `secret_key`, optionally `project_id`) or an IAM
token (`auth_token`). Configuration lives under `[sources.swr]`.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import dlt
from dlt.common.typing import TSecretStrValue
from dlt.sources import DltResource

from ..concurrency import plan_tasks, read_tasks, worker_processes
from ..errors import ConfigError, NotFoundError, register_secret
from ..model import TAGS, Rows, scope_marker
from ..state import KnownImages, RepositoryStamps
from ..values import BadValue, as_list, to_int
from .helpers import (
    ApiSpec,
    Problems,
    TagTask,
    map_repository,
    read_task,
    registry_host as _registry_host,
)
from .settings import (
    API_URL_TEMPLATE,
    CALL_REPOSITORIES,
    DEFAULT_CONCURRENCY,
    EMIT_ROWS,
    MAX_AUTO_PROCESSES,
    PAGE_LIMIT,
    PROCESS_MIN_REPOSITORIES,
    PROVIDER,
    REPOSITORIES_PER_TASK,
)

log = logging.getLogger("registry_etl.swr")


@dlt.source(name="swr", max_table_nesting=0)
def swr_source(
    region: str = dlt.config.value,
    namespaces: Optional[Any] = None,
    base_url: Optional[str] = None,
    registry_host: Optional[str] = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    access_key: Optional[TSecretStrValue] = dlt.secrets.value,
    secret_key: Optional[TSecretStrValue] = dlt.secrets.value,
    project_id: Optional[TSecretStrValue] = dlt.secrets.value,
    auth_token: Optional[TSecretStrValue] = dlt.secrets.value,
    page_limit: int = PAGE_LIMIT,
    processes: int = 0,
    request_counter: Optional[Counter] = None,
) -> Sequence[DltResource]:
    """The SWR inventory of one region.

    Args:
        region: Huawei Cloud region, e.g. `cn-north-4` (names the API endpoint and the registry host).
        namespaces: Only these namespaces (one, a list, or comma-separated); all visible ones when empty.
        base_url: Another API endpoint (a private one, or the emulator); default `https://swr-api.<region>.myhuaweicloud.com`.
        registry_host: The host `docker pull` uses, for deployments whose pull host is not
            `swr.<region>.myhuaweicloud.com` (the `path` of the repository records shows it).
        concurrency: Repositories whose tags are read at once.
        access_key: AK of the AK/SK pair that signs every request.
        secret_key: SK of the AK/SK pair.
        project_id: Project of the region, sent as `X-Project-Id` with AK/SK signing.
        auth_token: An IAM token (`X-Auth-Token`), instead of AK/SK; tokens expire after 24 hours.
        page_limit: Records per listing page (SWR allows at most 1000).
        processes: Worker processes reading tags when a page of the listing has many changed
            repositories (each process runs its own calls and builds arrow tables; Python maps
            rows on one core per process). 0: two per core, at most 4; 1: read in this process only.
        request_counter: A Counter that receives the number of calls per operation.

    Returns:
        The `namespace_list` (not loaded itself) and the `images` transformer, which emits
        the `repositories`, `images`, `images__layers`, `images__manifests`, `tags`,
        `load_problems`, `swr_repositories` and `swr_tags` tables.
    """
    if not region:
        raise ConfigError(PROVIDER, "configuration", "no region configured", hint="Set [sources.swr] region.")
    if not 0 < int(page_limit) <= PAGE_LIMIT:
        raise ConfigError(PROVIDER, "configuration", f"page_limit must be 1..{PAGE_LIMIT}, not {page_limit}")
    for secret in (access_key, secret_key, project_id, auth_token):
        register_secret(secret)
    counter = request_counter if request_counter is not None else Counter()
    spec = ApiSpec(base_url or API_URL_TEMPLATE.format(region=region), registry_host or _registry_host(region),
                   int(page_limit), access_key or None, secret_key or None, project_id or None, auth_token or None)
    api = spec.build(counter)  # checks the credentials are set before anything is read
    workers = worker_processes(processes, MAX_AUTO_PROCESSES)
    wanted_namespaces = as_list(namespaces)
    known = KnownImages(PROVIDER)
    stamps = RepositoryStamps()
    warned: set = set()  # namespaces whose pull path disagrees with the registry host

    @dlt.resource(name="namespace_list", selected=False)
    def namespace_list() -> Iterator[List[str]]:
        """The namespaces to read, as one item: `images` reads them one after another in one
        call. dlt reads the transformer calls of several items at once (round robin), so an item
        per page of repositories had every page's threads calling at the same time: the calls in
        flight were `concurrency` times the pages."""
        visible = api.list_namespaces()
        missing = [name for name in wanted_namespaces if name not in visible]
        if missing:
            raise NotFoundError(
                PROVIDER, "list_namespaces", f"namespace(s) {', '.join(missing)} not found or not visible",
                registry=api.host, hint="Check [sources.swr] namespaces and the permissions of the credentials.",
            )
        yield list(wanted_namespaces or visible)

    @dlt.transformer(data_from=namespace_list, name="images")
    def images(namespaces: List[str]) -> Iterator[Any]:
        """Per namespace, page by page: repository rows; tags, images and layers of the
        repositories that changed (overlapped). Then the tags of repositories gone are closed."""
        for namespace in namespaces:
            records = api.list_repositories(namespace)
            for start in range(0, len(records), PAGE_LIMIT):
                yield from _read_page(namespace, records[start : start + PAGE_LIMIT])
            registry = api.registry(namespace)
            rows = Rows()
            for repository in stamps.forget_unlisted(registry, [record.get("name") for record in records]):
                log.info("swr %s: repository %s is gone; its tags are closed", registry, repository)
                rows.add(TAGS, scope_marker(PROVIDER, registry, repository))
            yield from rows.emit_all()

    def _read_page(namespace: str, page: List[Dict[str, Any]]) -> Iterator[Any]:
        rows = Rows()
        candidates: List[Dict[str, Any]] = []
        registry = api.registry(namespace)
        for record in page:
            if not record.get("name"):
                rows.problem(PROVIDER, registry, None, CALL_REPOSITORIES, str(record)[:200], "record without a name")
                continue
            name = map_repository(registry, record, rows, Problems(rows, registry, record["name"], CALL_REPOSITORIES))
            path = record.get("path")
            if path and path != f"{registry}/{name}" and namespace not in warned:
                warned.add(namespace)
                log.warning("swr: repository %s is pulled as %s, not %s/%s: set [sources.swr] registry_host",
                            name, path, registry, name)
            candidates.append(
                {"namespace": namespace, "registry": registry, "name": name,
                 "stamp": record.get("updated_at", record.get("updated")), "tag_count": record.get("num_images")}
            )
        yield from rows.emit_all()
        # what this page's repositories hold, read here: workers have no pipeline context
        known.load_page((repo["registry"], repo["name"]) for repo in candidates)
        changed = _needs_tags(candidates)
        if not changed:
            return
        plan = plan_tasks(len(changed), workers, concurrency, PROCESS_MIN_REPOSITORIES, REPOSITORIES_PER_TASK)
        tasks = [
            TagTask(spec, part, {repo["name"]: known.of(repo["registry"], repo["name"]) for repo in part}, plan.threads)
            for part in (changed[start : start + plan.size] for start in range(0, len(changed), plan.size))
        ]

        # the repositories of a page leave as a few large arrow tables: dlt's cost is per item
        batch = Rows()
        complete: Dict[str, List[Tuple[str, Any]]] = {}
        local_api = lambda task: api  # noqa: E731
        for task, task_rows, read_in_full in read_tasks(read_task, tasks, local_api, counter, concurrency, plan.workers):
            batch.merge(task_rows)
            for repo in task.repositories:
                if repo["name"] in read_in_full:  # the stamp moves only with the tags it stands for
                    complete.setdefault(repo["registry"], []).append((repo["name"], repo["stamp"]))
            if len(batch) >= EMIT_ROWS:
                yield from batch.emit_all()
        for registry, read in complete.items():  # one lookup of dlt's state per registry
            stamps.remember_all(registry, read)
        yield from batch.emit_all()

    def _needs_tags(candidates: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        """The repositories changed since the last load, or (a destination emptied under kept
        state) never landed, in listing order."""
        by_registry: Dict[str, Dict[str, Any]] = {}
        for repo in candidates:
            by_registry.setdefault(repo["registry"], {})[repo["name"]] = repo["stamp"]
        moved = {(registry, name) for registry, of in by_registry.items() for name in stamps.changed_among(registry, of)}
        needed = []
        for repo in candidates:
            if (repo["registry"], repo["name"]) in moved:
                needed.append(repo)
                continue
            try:
                tag_count = to_int(repo["tag_count"])
            except BadValue:
                tag_count = None
            if tag_count and not known.of(repo["registry"], repo["name"]):
                needed.append(repo)
        return needed

    return namespace_list, images
