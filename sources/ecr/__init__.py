"""AWS ECR: repositories, images, layers, index children and tag history, through boto3.

Calls: DescribeRepositories → ListImages (every page, maxResults 1000, the tag/image status
filters) → DescribeImages and BatchGetImage for digests not loaded before (100 ids a call).
Credentials come from boto3's default chain; throttling and 5xx are retried by botocore's
retry modes. Configuration lives under `[sources.ecr]`.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Dict, Iterator, List, Optional, Sequence

import dlt
from dlt.sources import DltResource

from ..concurrency import map_bounded
from ..errors import ConfigError
from ..model import TAGS, emit, scope_marker
from ..state import KnownImages
from ..values import as_list
from .helpers import EcrApi, RepositoryLoader, registry_of
from .settings import (
    DEFAULT_CONCURRENCY,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_RETRY_MODE,
    IMAGE_STATUSES,
    PROVIDER,
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
        request_counter: A Counter that receives the number of calls per operation.

    Returns:
        The `repositories` list (not loaded itself) and the `images` transformer, which emits the
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
    apis = [
        EcrApi(region, registry_id, endpoint_url, retry_mode, max_attempts, max(10, concurrency * 2), counter)
        for region in region_list
        for registry_id in (as_list(registry_ids) or [None])
    ]
    # an UNTAGGED-only listing sees no tags, so it must not retire any history
    tags_complete = tag_status != "UNTAGGED"
    known = KnownImages(PROVIDER)

    @dlt.resource(name="repository_list", selected=False)
    def repository_list() -> Iterator[List[Dict[str, Any]]]:
        """DescribeRepositories pages, with the API object the transformer needs."""
        for api in apis:
            registries = set()
            for page in api.list_repositories(repository_filter or None):
                for repo in page:
                    registries.add(registry_of(repo, api.region))
                    repo["_api"] = api
                yield page
            if tags_complete and not repository_filter:
                for registry in sorted(registries):
                    yield [{"_marker": scope_marker(PROVIDER, registry)}]

    @dlt.transformer(data_from=repository_list, name="images")
    def images(page: List[Dict[str, Any]]) -> Iterator[Any]:
        """Per repository (overlapped up to `concurrency`): tags, then details of new digests."""
        markers = [item["_marker"] for item in page if "_marker" in item]
        if markers:
            yield emit(TAGS, markers)
        repos = [item for item in page if "_marker" not in item]
        if not repos:
            return
        known.of("", "")  # read what is loaded once, here, before the worker threads start

        def load(repo: Dict[str, Any]) -> List[Any]:
            loader = RepositoryLoader(
                repo.pop("_api"), known.of, tag_status, image_status, tags_complete and bool(repository_filter)
            )
            return loader.load(repo)

        for tables in map_bounded(load, repos, concurrency):
            yield from tables

    return repository_list, images
