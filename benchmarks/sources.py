"""What the benchmark knows per source: adding a source is one entry in `BENCH_SOURCES`.

A source needs an emulator in `pipelines.catalog.PROVIDERS` whose `start_demo(inventory=…,
faults=…)` accepts a generated inventory, and a naive baseline in `benchmarks/baselines/`:
`run(duckdb_path) -> {table: rows}` making the same calls one after another (the emulator
is pointed at through the same environment variables as the source).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple


def _yandex_registries() -> Tuple[str, ...]:
    """Two Yandex-looking registry ids (`crp…`): the demo puts them in two folders."""
    from emulators.yandex import registry_ids

    return registry_ids(2, seed="bench")


@dataclass(frozen=True)
class BenchSource:
    name: str  # the provider name in pipelines.catalog
    registries: Tuple[str, ...]  # inventory registry names (ECR: regions)
    baseline: Optional[str]  # "module:function" of the naive baseline; None: our phases only
    # calls a no-op rerun must not make: per image (or batch of images), or per repository
    # for sources that skip unchanged repositories (NCP, SWR)
    detail_operations: Tuple[str, ...] = ()
    source_options: Dict[str, Any] = field(default_factory=dict)
    # "module:function" (inventory=, faults=) -> (emulator, env) instead of the catalog's start_demo
    starter: Optional[str] = None
    # the most images its emulator is given (a larger --images is scaled down, repositories too)
    max_images: Optional[int] = None


BENCH_SOURCES: Dict[str, BenchSource] = {
    s.name: s
    for s in (
        BenchSource(
            "ecr",
            registries=("us-east-1",),
            baseline="benchmarks.baselines.ecr:run",
            detail_operations=("DescribeImages", "BatchGetImage"),
        ),
        BenchSource(
            "ncp",
            registries=("bench-apps",),
            baseline="benchmarks.baselines.ncp:run",
            # per repository, read only for repositories whose `last_updated` moved
            detail_operations=("ListTags",),
        ),
        BenchSource(
            "swr",
            registries=("bench-team",),
            baseline="benchmarks.baselines.swr:run",
            # per repository, read only for repositories whose `updated_at` moved
            detail_operations=("list_tags",),
        ),
        # Image.list returns whole images: a Yandex load makes listing calls only
        BenchSource("yandex", registries=_yandex_registries(), baseline="benchmarks.baselines.yandex:run"),
        # a real docker-registry (CNCF distribution) with the inventory pushed into it: ~30
        # pushes/s here, so 2,000 images take about a minute to set up (200,000 would take 2 h)
        BenchSource(
            "oci",
            registries=("bench-oci",),
            baseline="benchmarks.baselines.oci:run",
            detail_operations=("get_manifest", "get_blob"),
            starter="benchmarks.oci_registry:start",
            max_images=2_000,
        ),
    )
}
