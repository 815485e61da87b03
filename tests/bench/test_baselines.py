"""Each naive benchmark baseline loads exactly its emulator's inventory, so the baselines (which
share only their auth classes with the sources) cannot silently rot: a baseline that lost a page,
a repository or a tag would make every ratio in the benchmark a lie."""

from __future__ import annotations

import importlib
import os
from typing import Any, Callable, Dict, Iterator, List, Set, Tuple

import duckdb
import pytest

from benchmarks.sources import BENCH_SOURCES
from emulators.inventory import Image, Inventory, Repository
from pipelines.catalog import PROVIDERS
from pipelines.load import environment
from tests.support import require_registry_binary

# keep boto3 away from any profile or token of the machine (the ECR baseline)
AWS_ISOLATION = {
    "AWS_PROFILE": None,
    "AWS_SESSION_TOKEN": None,
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}


def every_manifest(repo: Repository) -> Dict[str, Image]:
    """ECR and Yandex list every manifest, untagged ones and index children included."""
    return dict(repo.images)


def tagged(repo: Repository) -> Dict[str, Image]:
    """SWR lists tag records: tagged manifests only (index children are links, not images)."""
    return {digest: repo.images[digest] for digest in set(repo.tags.values())}


def tagged_and_children(repo: Repository) -> Dict[str, Image]:
    """NCP's tag objects carry the platform entries of a tagged index: its children are images too."""
    out = tagged(repo)
    for image in list(out.values()):
        out.update({child.digest: repo.images[child.digest] for child in image.children})
    return out


# (an OCI repository is an `emulators.oci.dataset.PushedRepository`: the same attributes)
VISIBLE: Dict[str, Callable[[Repository], Dict[str, Image]]] = {
    "ecr": every_manifest,
    "yandex": every_manifest,
    "swr": tagged,
    "ncp": tagged_and_children,
    # the Distribution API has no "list manifests": tagged manifests and their index children
    "oci": tagged_and_children,
}
# sources whose baseline writes a `layers` table
WITH_LAYERS = {"ecr", "yandex", "swr", "oci"}

BASELINED = [name for name, source in BENCH_SOURCES.items() if source.baseline]


def test_every_benchmarked_source_has_a_baseline_and_a_visibility_rule() -> None:
    assert set(BASELINED) == set(BENCH_SOURCES)
    assert set(BASELINED) <= set(VISIBLE)


def inventory_for(name: str) -> Inventory:
    """A small generated inventory that still needs a second page of every paged listing.

    Per registry 2 repositories of 600 pushes: each repository has more than 1,000 tags and each
    registry more than 1,000 manifests (a second page at the largest page size any API allows).
    OCI pushes into a real registry (~30 pushes/s), and the CNCF registry does not page tags:
    101 repositories of one push each, so that `/v2/_catalog` (100 per page) needs a second page.
    """
    source = BENCH_SOURCES[name]
    if name == "oci":
        return Inventory(seed=3, registries=source.registries, repositories=101, images=101)
    return Inventory(seed=3, registries=source.registries, repositories=2 * len(source.registries), images=1200 * len(source.registries))


@pytest.fixture(params=BASELINED)
def started(request: pytest.FixtureRequest, tmp_path) -> Iterator[Tuple[str, List[Any], str]]:
    """The source's emulator (as the benchmark starts it) over `inventory_for(source)`, with the
    env that points the baseline at it; yields the repositories as the registry holds them
    (OCI: as pushed, since a real registry needs real blobs, so digests are derived anew)."""
    name = request.param
    source = BENCH_SOURCES[name]
    if name == "oci":
        require_registry_binary()
    inventory = inventory_for(name)
    if source.starter:
        module, _, function = source.starter.partition(":")
        emulator, env = getattr(importlib.import_module(module), function)(inventory=inventory, faults=None)
    else:
        emulator, env = PROVIDERS[name].start_demo_emulator(inventory=inventory, faults=None)
    try:
        with environment({**env, **AWS_ISOLATION}):
            repos = list(emulator.data.repositories.values()) if name == "oci" else list(inventory.repositories())
            yield name, repos, str(tmp_path / "baseline.duckdb")
    finally:
        emulator.stop()


def _rows(path: str, sql: str) -> Set[tuple]:
    con = duckdb.connect(path, read_only=True)
    try:
        return set(con.execute(sql).fetchall())
    finally:
        con.close()


def test_baseline_loads_exactly_the_inventory(started) -> None:
    name, repos, path = started
    module, _, function = BENCH_SOURCES[name].baseline.partition(":")
    totals = getattr(importlib.import_module(module), function)(path)

    visible = {(repo.name, digest): image for repo in repos for digest, image in VISIBLE[name](repo).items()}
    tags = {(repo.name, tag, digest) for repo in repos for tag, digest in repo.tags.items()}
    if name != "oci":
        assert all(len(repo.tags) > 1000 for repo in repos)  # a second page of tags everywhere

    assert totals["tags"] == len(tags)
    assert totals["images"] == len(visible)
    assert totals["repositories"] == len(repos)
    assert _rows(path, "SELECT repository, tag, digest FROM tags") == tags
    assert _rows(path, "SELECT repository, digest FROM images") == set(visible)
    assert _rows(path, "SELECT repository FROM repositories") == {(repo.name,) for repo in repos}
    if name in WITH_LAYERS:
        layers = {
            (repository, digest, position, layer.digest)
            for (repository, digest), image in visible.items()
            for position, layer in enumerate(image.layers)
        }
        assert totals["layers"] == len(layers)
        assert _rows(path, "SELECT repository, image_digest, position, digest FROM layers") == layers
