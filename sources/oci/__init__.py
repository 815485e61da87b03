"""Any OCI registry (Distribution API v2): Harbor, GitLab, GHCR, Docker Hub, Quay, CNCF distribution.

Settings under `[sources.oci]` (env `SOURCES__OCI__…`):
- `registry_url`: the registry's base URL (`https://ghcr.io`, `http://127.0.0.1:5000`).
- `username`, `password` (secrets, optional): basic credentials, also sent to a bearer-token realm.
- `repositories` (optional): the repositories to read, for registries whose `/v2/_catalog` is
  closed (Docker Hub, GHCR); without it the catalog is walked in full.
- `registry_name` (optional): the `registry` column; default host[:port] of `registry_url`, so
  `{registry}/{repository}:{tag}` is what `docker pull` takes.
- `catalog_page_size`, `concurrency`, `verify_tls`.

Rows: `images.size_bytes` is config + layers (what a pull downloads, compressed), NULL for an
index or manifest list, whose children are `images` rows of their own linked through
`images__manifests` (summing them would count shared layers twice); `repositories.image_count`
is the number of distinct tagged manifests (`tag_count` the number of tags).

What the Distribution API cannot give: untagged manifests that no index references (there is no
"list manifests" call), push and pull times and pull counts. `created_at` is the image's build
time (config `created`, or the `org.opencontainers.image.created` annotation).
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any, Dict, Iterator, Optional, Sequence

import dlt
from dlt.sources import DltResource

from ..model import IMAGE_LAYERS, TAGS, Rows, emit, scope_marker
from ..state import KnownImages
from ..values import as_list
from .helpers import OciClient, RepositoryReader, registry_host
from .settings import DEFAULT_CATALOG_PAGE_SIZE, DEFAULT_CONCURRENCY, PROVIDER, ROWS_PER_BATCH

log = logging.getLogger("registry_etl.oci")


@dlt.source(name="oci", max_table_nesting=0)
def oci_source(
    registry_url: str = dlt.config.value,
    username: Optional[str] = dlt.secrets.value,
    password: Optional[str] = dlt.secrets.value,
    repositories: Optional[Any] = None,
    registry_name: Optional[str] = None,
    catalog_page_size: int = DEFAULT_CATALOG_PAGE_SIZE,
    concurrency: int = DEFAULT_CONCURRENCY,
    verify_tls: bool = True,
    request_counter: Optional[Counter] = None,
) -> Sequence[DltResource]:
    """Repositories, images (manifests, index children), layers and tag history of one OCI registry.

    Args:
        registry_url: Base URL of the registry.
        username: User for basic auth or for the token realm; anonymous when unset.
        password: Password or access token of `username`.
        repositories: Repositories to read instead of walking `/v2/_catalog` (one, a list, or
            comma-separated); their tag history is retired only inside them.
        registry_name: Value of the `registry` column; default host[:port] of `registry_url`.
        catalog_page_size: `n` of each `/v2/_catalog` page (the CNCF registry refuses > 1000).
        concurrency: Manifest HEAD/GET calls in flight within a repository.
        verify_tls: Verify the registry's TLS certificate (off only for a private test registry).
        request_counter: A Counter that receives the number of calls per kind (catalog, tags,
            head_manifest, get_manifest, get_blob, token).

    Returns:
        The `repository_list` resource (not loaded itself) and the `images` transformer, which
        emits the `repositories`, `images`, `images__layers`, `images__manifests`, `tags` and
        `load_problems` tables.
    """
    client = OciClient(
        registry_url,
        username,
        password,
        registry=registry_name or registry_host(registry_url),
        verify_tls=verify_tls,
        counter=request_counter,
    )
    configured = list(dict.fromkeys(name.strip("/") for name in as_list(repositories) if name.strip("/")))
    known = KnownImages(PROVIDER)
    reader = RepositoryReader(client, lambda repository: known.of(client.registry, repository), concurrency)

    @dlt.resource(name="repository_list", selected=False)
    def repository_list() -> Iterator[Dict[str, Any]]:
        """Pages of repository names (the configured list, or the whole `/v2/_catalog`), then
        one page with `complete` set: the walk reached its end."""
        if configured:
            yield {"names": configured, "complete": False}
        else:
            for names in client.catalog(catalog_page_size):
                yield {"names": names, "complete": False}
        yield {"names": [], "complete": True}

    @dlt.transformer(data_from=repository_list, name="images")
    def images(page: Dict[str, Any]) -> Iterator[Any]:
        """Per repository: tags (a HEAD per tag for its digest), then new manifests and configs."""
        rows = Rows()  # one arrow table per table and page: dlt's cost is per item, not per row
        for name in page["names"]:
            try:
                reader.read(name, must_exist=bool(configured), rows=rows)
            except BaseException:
                reader.close()  # the run ends here: do not leave the worker threads behind
                raise
            if configured:
                # a filtered run retires tag history only inside the repositories it read
                rows.add(TAGS, scope_marker(PROVIDER, client.registry, name))
            if rows.count(TAGS) + rows.count(IMAGE_LAYERS) >= ROWS_PER_BATCH:
                yield from rows.emit_all()
        yield from rows.emit_all()
        if page["complete"]:
            if not configured:
                # sent only after the catalog walk ended without error: a run that died half way
                # never retires the tags of repositories it did not reach
                yield emit(TAGS, [scope_marker(PROVIDER, client.registry)])
            reader.close()
            log.info(client.summary())

    return repository_list, images
