"""Yandex Cloud Container Registry: registries, repositories, images, layers and tag history.

Calls: Registry.list per folder (or Registry.get per configured id) and Repository.list per
registry → per registry (overlapped up to `concurrency`) Image.list, every page at pageSize
1000; with a repository filter, Image.list per repository instead. Image.list returns each image whole
(blobs, tags, createdAt), so a run makes listing calls only, and every run lists every image.
Images already loaded are not emitted again. Each repository's listing leaves a fingerprint in
the resource state (`ListingState`): a repository listed as at the last load, whose digests the
destination still holds, emits no rows at all; a changed one emits its tags under its own scope
marker, one that vanished a marker alone. A first load (or lost state) emits every tag under one
registry marker. Credentials: an IAM token, a
service-account authorized key or an OAuth token (see `auth.py`). Configuration lives under
`[sources.yandex]`, secrets in `.dlt/secrets.toml` or the environment.

`registry` is `cr.yandex/<registry id>` and `repository` the image name without the registry
id, so `{registry}/{repository}:{tag}` is what `docker pull` takes.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any, Dict, Iterator, List, Optional, Sequence

import dlt
from dlt.common.typing import TSecretStrValue
from dlt.sources import DltResource

from ..concurrency import release_freed_memory, stream_bounded
from ..errors import ConfigError
from ..http import build_session
from ..model import TAGS, Rows, emit, scope_marker
from ..state import KnownImages, ListingState
from .auth import BearerAuth, OAuthToken, ServiceAccountKeyToken, StaticToken, TokenSource, load_key_file
from .helpers import (
    YANDEX_REGISTRIES,
    Unit,
    UnitLoader,
    UnitResult,
    YandexApi,
    as_list,
    loaded_registries,
    registry_ref,
    registry_row,
    repository_ids,
    select_units,
)
from .settings import DEFAULT_BASE_URL, DEFAULT_CONCURRENCY, DEFAULT_IAM_URL, IAM_TOKENS_PATH, PROVIDER

log = logging.getLogger("registry_etl.yandex")


def token_source(
    iam_token: Optional[str],
    service_account_key: Optional[str],
    service_account_key_file: Optional[str],
    oauth_token: Optional[str],
    iam_url: str,
) -> TokenSource:
    """The one configured way to get IAM tokens (a service-account key wins over the others)."""
    if service_account_key or service_account_key_file:
        key = service_account_key or load_key_file(str(service_account_key_file))
        return ServiceAccountKeyToken(key, iam_url, session=build_session())
    if iam_token:
        return StaticToken(iam_token)
    if oauth_token:
        return OAuthToken(oauth_token, iam_url, session=build_session())
    raise ConfigError(
        PROVIDER,
        "configuration",
        "no credentials configured",
        hint=(
            "Set one of [sources.yandex] service_account_key_file (or service_account_key), iam_token"
            " or oauth_token in .dlt/secrets.toml or SOURCES__YANDEX__… environment variables."
        ),
    )


def tokens_url(iam_url: str) -> str:
    """`iam_url` may be the tokens endpoint itself or the IAM host it lives on."""
    url = iam_url.rstrip("/")
    return url if url.endswith(IAM_TOKENS_PATH) else url + IAM_TOKENS_PATH


@dlt.source(name="yandex", max_table_nesting=0)
def yandex_source(
    folder_id: Optional[Any] = None,
    registry_ids: Optional[Any] = None,
    repositories: Optional[Any] = None,
    iam_token: Optional[TSecretStrValue] = None,
    service_account_key: Optional[TSecretStrValue] = None,
    service_account_key_file: Optional[str] = None,
    oauth_token: Optional[TSecretStrValue] = None,
    base_url: str = DEFAULT_BASE_URL,
    iam_url: str = DEFAULT_IAM_URL,
    concurrency: int = DEFAULT_CONCURRENCY,
    page_size: int = 1000,
    request_counter: Optional[Counter] = None,
) -> Sequence[DltResource]:
    """The Container Registry inventory of one or more folders (or of given registries).

    Args:
        folder_id: Folder(s) whose registries are read, one or a list (`["b1g…", "b1g…"]`).
        registry_ids: Only these registries (`crp…`); without `folder_id` they are fetched by id.
        repositories: Only these repositories: `crp…/app` for one registry's, `app` for every
            selected registry's (their tag history outside them is left alone).
        iam_token: An IAM token (`yc iam create-token`); lives up to 12 h, not renewed.
        service_account_key: A service-account authorized key, the JSON `yc iam key create` writes.
        service_account_key_file: The path of that JSON file instead.
        oauth_token: A Yandex OAuth token, exchanged for IAM tokens (deprecated by Yandex).
        base_url: The Container Registry API (a private endpoint, or the emulator).
        iam_url: The IAM tokens endpoint (or its host).
        concurrency: Registries (or filtered repositories) read at once.
        page_size: Page size of the list calls (1..1000; smaller only for tests).
        request_counter: A Counter that receives the number of calls per API method.

    Returns:
        The `registry_list` resource (not loaded itself) and the `images` transformer, which emits
        the `yandex_registries`, `repositories`, `images`, `images__layers`, `yandex_images`,
        `tags` and `load_problems` tables.
    """
    folders = as_list(folder_id)
    wanted_registries = as_list(registry_ids)
    repository_filter = as_list(repositories)
    if not folders and not wanted_registries:
        raise ConfigError(
            PROVIDER, "configuration", "neither folder_id nor registry_ids is configured",
            hint="Set [sources.yandex] folder_id (one or a list) or registry_ids.",
        )
    if not 1 <= int(page_size) <= 1000:
        raise ConfigError(PROVIDER, "configuration", f"page_size {page_size} is not within 1..1000")
    auth = BearerAuth(token_source(iam_token, service_account_key, service_account_key_file, oauth_token, tokens_url(iam_url)))
    counter = request_counter if request_counter is not None else Counter()
    api = YandexApi(base_url, auth, counter, int(page_size))
    known = KnownImages(PROVIDER)
    listings = ListingState()

    @dlt.resource(name="registry_list", selected=False)
    def registry_list() -> Iterator[List[Dict[str, Any]]]:
        """Registry.list per folder (Registry.get for ids not found there) and Repository.list per
        registry: the registry rows and the units of work."""
        records: Dict[str, Dict[str, Any]] = {}
        for folder in folders:
            for page in api.registries(folder):
                for record in page:
                    if record.get("id") and (not wanted_registries or record["id"] in wanted_registries):
                        records[record["id"]] = record
        for registry_id in wanted_registries:
            if registry_id not in records:
                records[registry_id] = api.registry(registry_id)
        rows = Rows()
        for record in records.values():
            row = registry_row(record, rows)
            if row is not None:
                rows.add(YANDEX_REGISTRIES, row)
        # Repository.list here (one cheap call per registry): it checks the repository filter
        # before anything is read, and it names the repositories that have no image
        units = select_units({r: repository_ids(api, r) for r in sorted(records)}, repository_filter)
        gone: List[str] = []
        if folders and not wanted_registries and not repository_filter:
            # a registry deleted since the last load is listed no more: close its tags too
            gone = sorted(loaded_registries(folders) - set(records))
        yield [{"_tables": list(rows.emit_all())}] + [{"_gone": registry_id} for registry_id in gone] + [{"_unit": unit} for unit in units]

    @dlt.transformer(data_from=registry_list, name="images")
    def images(page: List[Dict[str, Any]]) -> Iterator[Any]:
        """Per unit (overlapped up to `concurrency`): repositories, images, layers and tags; the
        repositories whose listing did not change since the last load give no rows."""
        listings.begin()
        for item in page:
            yield from item.get("_tables", ())
        for registry_id in (item["_gone"] for item in page if "_gone" in item):
            log.info("yandex registry %s is gone from its folder: closing its tag history", registry_id)
            yield emit(TAGS, [scope_marker(PROVIDER, registry_ref(registry_id))])
            listings.forget_others(registry_ref(registry_id), ())  # if it comes back, it is read in full
        units = [item["_unit"] for item in page if "_unit" in item]
        if not units:
            return
        known.of("", "")  # read what is loaded once, here, before the worker threads start
        for unit in units:
            registry = registry_ref(unit.registry_id)
            if listings.incremental(registry):
                unit.previous = {name: listings.previous(registry, name) for name in unit.repository_ids}

        def read(unit: Unit) -> Iterator[Any]:
            return UnitLoader(api, known.of).stream(unit)

        # tables leave as the units make them (a unit is a whole registry: holding its tables
        # until it is read took 1.6 GB at 200,000 images); a unit's state only once it is done
        for unit, output in stream_bounded(read, units, concurrency):
            if isinstance(output, UnitResult):
                yield from output.tables
                yield from _remember(unit, output.fingerprints)
            else:
                yield output
        # the units' mapping left ~230 MB freed but kept by the allocators at 200,000 images
        release_freed_memory()

    def _remember(unit: Unit, fingerprints: Dict[str, str]) -> Iterator[Any]:
        """Keep the unit's fingerprints for the next run; retire the tags of repositories an
        incremental registry no longer holds."""
        registry = registry_ref(unit.registry_id)
        if unit.repositories is not None and unit.previous is None:
            # a filtered read of a registry without fingerprints: remembering some would make the
            # next full run skip the registry marker that retires what the others no longer hold
            return
        for name, fingerprint in fingerprints.items():
            listings.remember(registry, name, fingerprint)
        if unit.repositories is None:
            gone = listings.forget_others(registry, fingerprints)
            if gone and unit.previous is not None:
                log.info("yandex %s: %d repositories are gone: closing their tag history", registry, len(gone))
                yield emit(TAGS, [scope_marker(PROVIDER, registry, name) for name in gone])

    return registry_list, images
