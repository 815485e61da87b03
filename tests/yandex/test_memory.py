"""Memory bounded by pages: a registry's image and layer tables leave the source while its
listing is still being paged, not once the whole registry was read."""

from __future__ import annotations

import math

from sources.model import IMAGES
from sources.yandex import yandex_source
from tests.yandex.conftest import inventory


def is_images_table(item) -> bool:
    """An `images` arrow table (iterating a resource hands the tables without dlt's hints):
    the unified images columns, none of the layer, tag or `yandex_images` key columns."""
    names = set(getattr(item, "schema", None).names if hasattr(item, "schema") else ())
    return set(IMAGES.column_names) <= names and not names & {"image_digest", "tag", "image_id"}


def test_image_tables_leave_before_the_registry_listing_ends(yandex_env):
    inv = inventory(registries=1, repositories=4, images=40, seed=5)
    emulator = yandex_env(inv)
    page_size = 5
    manifests = sum(len(repo.images) for repo in inv.repositories())
    pages = math.ceil(manifests / page_size)
    assert pages >= 6

    source = yandex_source(page_size=page_size, concurrency=1)
    calls_at_image_tables = []
    images_seen = 0
    for item in source.resources["images"]:
        if is_images_table(item):
            calls_at_image_tables.append(emulator.counters["Image.list"])
            images_seen += item.num_rows

    assert images_seen == manifests  # every image once, as in the inventory
    assert emulator.counters["Image.list"] == pages
    # the first page's images were handed on while most of the listing was still unread: a
    # source that held the registry's tables until its end would hand them all at `pages`
    assert calls_at_image_tables[0] <= 3, calls_at_image_tables
    assert len(calls_at_image_tables) >= pages - 2
