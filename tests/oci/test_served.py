"""The reliability suite's OCI harness (emulators/oci/served.py) serves exactly its inventory:
after tags are moved and deleted, images pushed and a repository renamed to an odd name, a load
through it finds the inventory's tags and visible manifests, nothing else. (The suite compares
faulty runs with clean ones through this harness: both would be wrong alike if it were.)"""

from __future__ import annotations

from emulators.oci.served import OciInventory, start_served
from pipelines.load import environment
from tests.oci.conftest import load_oci
from tests.support import current_tags, new_pipeline, query, require_registry_binary

REGISTRY = "served-test"


def expected(inventory):
    images, tags = {}, {}
    for repo in inventory.repositories():
        tagged = set(repo.tags.values())
        for digest in tagged | {c.digest for d in tagged for c in repo.images[d].children}:
            image = repo.images[digest]
            images[(repo.name, digest)] = (None if image.is_index else image.content_size, image.media_type)
        tags.update({(REGISTRY, repo.name, tag): digest for tag, digest in repo.tags.items()})
    return images, tags


def loaded(pipeline):
    rows = query(pipeline, "SELECT repository, digest, size_bytes, media_type FROM images")
    return {(r, d): (size, media_type) for r, d, size, media_type in rows}, current_tags(pipeline, "oci")


def test_the_served_registry_follows_its_inventory(tmp_path):
    require_registry_binary()
    inventory = OciInventory(seed=3, registries=(REGISTRY,), repositories=3, images=24)
    served = start_served(inventory)
    try:
        with environment({"SOURCES__OCI__REGISTRY_URL": served.url, "SOURCES__OCI__REGISTRY_NAME": REGISTRY}):
            pipeline = new_pipeline(tmp_path)
            load_oci(pipeline)
            assert loaded(pipeline) == expected(inventory)

            inventory.move_tags(3)
            deleted = inventory.delete_tags(3)
            inventory.push_images(3)
            repo = sorted(inventory.repositories(), key=lambda r: r.name)[0]
            del inventory.registries[REGISTRY][repo.name]
            old_name, repo.name = repo.name, "Odd Name/with ..;quote'"
            inventory.registries[REGISTRY][repo.name] = repo
            load_oci(pipeline)
            images, tags = loaded(pipeline)
            want_images, want_tags = expected(inventory)
            assert tags == want_tags
            # `images` keeps what earlier runs saw (history); every manifest visible now is there
            assert {key: images.get(key) for key in want_images} == want_images
            assert not [key for key in tags if key[2] in {tag for _, tag, _ in deleted} and key[1] != repo.name]
            # the old name stays listed by the CNCF registry, without tags: an empty repository
            assert query(pipeline, "SELECT image_count, tag_count FROM repositories WHERE repository = %s", old_name) == [(0, 0)]
    finally:
        served.stop()
