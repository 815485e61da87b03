"""Test helpers shared by every source's tests: pipelines on temp files, queries, and the
expected unified rows computed from an emulator's inventory."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Any, Callable, Dict, List, Tuple

import dlt
import pytest

from emulators.inventory import Inventory
from pipelines.load import make_pipeline

# the repository's top folder: the cwd and PYTHONPATH of the commands tests run as a user would
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def new_pipeline(tmp_path, name: str = "registry_etl.duckdb") -> dlt.Pipeline:
    """A registry_etl pipeline with its DuckDB file and its local state under tmp_path."""
    return make_pipeline(duckdb_path=str(tmp_path / name), pipelines_dir=str(tmp_path / "pipelines"))


def query(pipeline: dlt.Pipeline, sql: str, *params: Any) -> List[Tuple[Any, ...]]:
    """Run SQL on the pipeline's dataset (tables addressed unqualified)."""
    with pipeline.sql_client() as client:
        with client.execute_query(sql, *params) as cursor:
            return [tuple(row) for row in cursor.fetchall()]


def table_exists(pipeline: dlt.Pipeline, table: str) -> bool:
    with pipeline.sql_client() as client:
        return bool(
            client.execute_sql(
                "SELECT 1 FROM information_schema.tables WHERE table_schema = %s AND table_name = %s",
                pipeline.dataset_name,
                table,
            )
        )


def truncate_ms(stamp_ns: int) -> datetime:
    return datetime.fromtimestamp(stamp_ns // 10**9, tz=timezone.utc).replace(
        microsecond=(stamp_ns % 10**9) // 10**6 * 1000
    )


def truncate_us(stamp_ns: int) -> datetime:
    return datetime.fromtimestamp(stamp_ns // 10**9, tz=timezone.utc).replace(
        microsecond=(stamp_ns % 10**9) // 1000
    )


RegistryName = Callable[[str], str]  # inventory registry -> unified `registry` value


def expected_images(inv: Inventory, registry_name: RegistryName, time_fn=truncate_ms, size_fn=None) -> Dict[tuple, tuple]:
    """(registry, repository, digest) -> (size_bytes, created_at, media_type)."""
    out = {}
    for repo in inv.repositories():
        for digest, image in repo.images.items():
            size = size_fn(image) if size_fn else image.content_size
            out[(registry_name(repo.registry), repo.name, digest)] = (size, time_fn(image.created_ns), image.media_type)
    return out


def expected_layers(inv: Inventory, registry_name: RegistryName) -> Dict[tuple, List[tuple]]:
    """(registry, repository, image digest) -> [(digest, size), …] in manifest order."""
    out = {}
    for repo in inv.repositories():
        for digest, image in repo.images.items():
            if not image.is_index:
                out[(registry_name(repo.registry), repo.name, digest)] = [(l.digest, l.size) for l in image.layers]
    return out


def expected_children(inv: Inventory, registry_name: RegistryName) -> Dict[tuple, List[tuple]]:
    """(registry, repository, index digest) -> [(child digest, os, arch, variant, size), …]."""
    out = {}
    for repo in inv.repositories():
        for digest, image in repo.images.items():
            if image.is_index:
                out[(registry_name(repo.registry), repo.name, digest)] = [
                    (c.digest, c.platform[0], c.platform[1], c.platform[2], len(c.raw)) for c in image.children
                ]
    return out


def expected_tags(inv: Inventory, registry_name: RegistryName) -> Dict[tuple, str]:
    """(registry, repository, tag) -> digest, the current tag map."""
    return {
        (registry_name(repo.registry), repo.name, tag): digest
        for repo in inv.repositories()
        for tag, digest in repo.tags.items()
    }


def loaded_images(pipeline, provider: str) -> Dict[tuple, tuple]:
    rows = query(pipeline, "SELECT registry, repository, digest, size_bytes, created_at, media_type FROM images WHERE provider = %s", provider)
    return {(r[0], r[1], r[2]): (r[3], r[4], r[5]) for r in rows}


def loaded_layers(pipeline, provider: str) -> Dict[tuple, List[tuple]]:
    rows = query(
        pipeline,
        "SELECT registry, repository, image_digest, position, digest, size_bytes FROM images__layers"
        " WHERE provider = %s ORDER BY registry, repository, image_digest, position",
        provider,
    )
    out: Dict[tuple, List[tuple]] = {}
    for registry, repository, image_digest, position, digest, size in rows:
        layers = out.setdefault((registry, repository, image_digest), [])
        assert position == len(layers), "layer positions must be 0..n-1 in manifest order"
        layers.append((digest, size))
    return out


def loaded_children(pipeline, provider: str) -> Dict[tuple, List[tuple]]:
    rows = query(
        pipeline,
        "SELECT registry, repository, image_digest, position, digest, platform_os, platform_arch, platform_variant, size_bytes"
        " FROM images__manifests WHERE provider = %s ORDER BY registry, repository, image_digest, position",
        provider,
    )
    out: Dict[tuple, List[tuple]] = {}
    for registry, repository, image_digest, _position, *child in rows:
        out.setdefault((registry, repository, image_digest), []).append(tuple(child))
    return out


def current_tags(pipeline, provider: str) -> Dict[tuple, str]:
    rows = query(pipeline, "SELECT registry, repository, tag, digest FROM tags WHERE provider = %s AND valid_to IS NULL", provider)
    out = {}
    for registry, repository, tag, digest in rows:
        key = (registry, repository, tag)
        assert key not in out, f"two open rows for {key}"
        out[key] = digest
    return out


def tag_history(pipeline, provider: str) -> Dict[tuple, List[Tuple[str, bool]]]:
    """(registry, repository, tag) -> [(digest, is_open), …] oldest first."""
    rows = query(
        pipeline,
        "SELECT registry, repository, tag, digest, valid_to IS NULL FROM tags WHERE provider = %s ORDER BY valid_from, valid_to NULLS LAST",
        provider,
    )
    out: Dict[tuple, List[Tuple[str, bool]]] = {}
    for registry, repository, tag, digest, is_open in rows:
        out.setdefault((registry, repository, tag), []).append((digest, bool(is_open)))
    return out


def change_inventory(inventory: Inventory, emulator: Any, moves: int = 12, deletes: int = 4, pushes: int = 15) -> None:
    """Tags moved and deleted, images pushed, and the emulator told (a changed rerun's input)."""
    inventory.move_tags(moves)
    inventory.delete_tags(deletes)
    inventory.push_images(pushes)
    emulator.inventory_changed()


def table_counts(pipeline, tables=("repositories", "images", "images__layers", "images__manifests", "tags")) -> Dict[str, int]:
    return {t: query(pipeline, f"SELECT count(*) FROM {t}")[0][0] if table_exists(pipeline, t) else 0 for t in tables}


def count_json_parses(monkeypatch) -> List[Any]:
    """Every answer `sources.http` parses from now on (one entry each, from any thread)."""
    from sources import http

    parses: List[Any] = []
    real = http._loads
    monkeypatch.setattr(http, "_loads", lambda text: parses.append(len(text)) or real(text))
    return parses


def rows_as_dicts(rows: Any) -> Dict[str, List[Dict[str, Any]]]:
    """A `model.Rows`' rows per table as dicts, without emitting them: the dict rows, then the
    column-built ones (`Rows.add_columns`), whose missing columns read as None."""
    tables: Dict[str, List[Dict[str, Any]]] = {name: list(values) for name, values in rows._rows.items()}
    for name, parts in rows._parts.items():
        tables.setdefault(name, []).extend(row for part in parts for row in part.to_pylist())
    return tables


def force_worker_processes(monkeypatch: Any, source_module: Any, repositories_per_task: int = 3) -> None:
    """A source (ECR, NCP, SWR) reads in worker processes even a few repositories (normally
    from 64 to read), a few repositories per task, so a small inventory spans several tasks."""
    monkeypatch.setattr(source_module, "PROCESS_MIN_REPOSITORIES", 2)
    monkeypatch.setattr(source_module, "REPOSITORIES_PER_TASK", repositories_per_task)


def assert_our_auth_error(caught: Any, secret: str, *words: str) -> None:
    """What a refused credential raised (in a worker process or not) reaches the caller as our
    `AuthError`, its message naming `words` (call, registry, the registry's code), no secret."""
    from pipelines.cli import _root_cause
    from sources.errors import AuthError

    error = _root_cause(caught.value)
    assert isinstance(error, AuthError), repr(error)
    text = str(error)
    assert all(word in text for word in words), text
    assert secret not in text and secret not in repr(caught.value)


def load_snapshot(pipeline: Any, provider: str, **queries: str) -> Dict[str, Any]:
    """Everything a load of `provider` decided, without dlt's load ids and wall-clock validity
    times: images, layers, index children, current tags, tag history, and one sorted result per
    extra `name=SQL` (a table no load created reads as empty). Two loads that must agree (worker
    processes or one process) compare equal."""
    snapshot: Dict[str, Any] = {
        "images": loaded_images(pipeline, provider),
        "layers": loaded_layers(pipeline, provider) if table_exists(pipeline, "images__layers") else {},
        "children": loaded_children(pipeline, provider),
        "tags": current_tags(pipeline, provider),
        "history": tag_history(pipeline, provider),
    }
    for name, sql in queries.items():
        table = sql.rsplit(" FROM ", 1)[1].split()[0]
        snapshot[name] = sorted(query(pipeline, sql)) if table_exists(pipeline, table) else []
    return snapshot


def registry_unavailable(reason: str) -> None:
    """A test that needs the real OCI registry (`docker-registry`) and cannot have it: skipped on
    a developer's machine, failed in CI (env `CI`), whose `.ci/run` installs it."""
    if os.environ.get("CI"):
        pytest.fail(f"CI: the real OCI registry is required but could not start: {reason}")
    pytest.skip(f"docker-registry not available: {reason} (apt-get install docker-registry)")


def require_registry_binary() -> None:
    """`registry_unavailable` unless the `docker-registry` binary is installed."""
    from emulators.oci import registry_binary

    if registry_binary() is None:
        registry_unavailable("the docker-registry binary is not installed")
