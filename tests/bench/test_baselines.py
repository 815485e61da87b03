"""Each naive benchmark baseline loads exactly its emulator's inventory, so the baselines (which
share nothing with the sources' load path) cannot silently rot: a baseline that lost a page,
a repository or a tag would make every ratio in the benchmark a lie."""

from __future__ import annotations

import importlib
import os
from typing import Callable, Dict, Iterator, Set, Tuple

import duckdb
import pytest

from benchmarks.sources import BENCH_SOURCES
from emulators.inventory import Image, Inventory, Repository
from pipelines.catalog import PROVIDERS
from pipelines.load import environment

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
        out.update({child.digest: child for child in image.children})
    return out


VISIBLE: Dict[str, Callable[[Repository], Dict[str, Image]]] = {
    "ecr": every_manifest,
    "yandex": every_manifest,
    "swr": tagged,
    "ncp": tagged_and_children,
}
# sources whose baseline writes a `layers` table
WITH_LAYERS = {"ecr", "yandex", "swr"}

BASELINED = [name for name, source in BENCH_SOURCES.items() if source.baseline]


def test_every_benchmarked_source_has_a_baseline_and_a_visibility_rule() -> None:
    assert set(BASELINED) == set(BENCH_SOURCES)
    assert set(BASELINED) <= set(VISIBLE)


@pytest.fixture(params=BASELINED)
def started(request: pytest.FixtureRequest, tmp_path) -> Iterator[Tuple[str, Inventory, str]]:
    """The source's emulator over a small generated inventory with the env that points the
    baseline at it: per registry 2 repositories of 600 pushes, so each repository has more than
    1,000 tags and each registry more than 1,000 manifests (a second page at the largest page
    size any of the APIs allows)."""
    name = request.param
    source = BENCH_SOURCES[name]
    inventory = Inventory(seed=3, registries=source.registries, repositories=2 * len(source.registries), images=1200 * len(source.registries))
    emulator, env = PROVIDERS[name].start_demo_emulator(inventory=inventory, faults=None)
    try:
        with environment({**env, **AWS_ISOLATION}):
            yield name, inventory, str(tmp_path / "baseline.duckdb")
    finally:
        emulator.stop()


def _rows(path: str, sql: str) -> Set[tuple]:
    con = duckdb.connect(path, read_only=True)
    try:
        return set(con.execute(sql).fetchall())
    finally:
        con.close()


def test_baseline_loads_exactly_the_inventory(started) -> None:
    name, inventory, path = started
    module, _, function = BENCH_SOURCES[name].baseline.partition(":")
    totals = getattr(importlib.import_module(module), function)(path)

    repos = list(inventory.repositories())
    visible = {(repo.name, digest): image for repo in repos for digest, image in VISIBLE[name](repo).items()}
    tags = {(repo.name, tag, digest) for repo in repos for tag, digest in repo.tags.items()}
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
