"""What earlier loads already hold, read from the destination itself.

Digests are immutable, so anything costly per image is fetched once per digest: a source asks
`KnownImages` which digests of a repository are already in the `images` table and fetches
details only for the others. Reading the destination (not a cursor kept in state) means a run
that died before its load never hides data from the next run: what is not in the table is
fetched again.

`RepositoryStamps` keeps, in dlt's resource state, the update stamp each repository had at
the last successful load (NCP `last_updated`, SWR `updated_at`); dlt commits that state with
the data, so a failed load does not advance it. It also tells which repositories an earlier load
saw (`repositories_of`, `forget_unlisted`), so a source can close the tag history of one that
vanished since.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Dict, Iterable, List, Optional, Set, Tuple

import dlt

log = logging.getLogger("registry_etl.state")

RepoKey = Tuple[str, str]  # (registry, repository)

# A flag in the pipeline's local state (set by `pipelines.load.settle_pending`): a discarded load
# package had already merged `images` rows whose layers, manifests or other rows may not have
# landed; until a load lands, no digest counts as known, so every image's details are fetched.
REREAD_KNOWN_IMAGES = "reread_known_images"


class KnownImages:
    """Digests per (registry, repository) already loaded for one provider."""

    def __init__(self, provider: str, pipeline: Optional[Any] = None) -> None:
        self.provider = provider
        self._pipeline = pipeline
        self._known: Optional[Dict[RepoKey, Set[str]]] = None
        self._lock = threading.Lock()

    def load_page(self, repositories: Iterable[RepoKey]) -> None:
        """Hold the digests of these repositories only (one page of a listing), instead of
        the whole provider's: memory bounded by a page, not by the registry."""
        wanted = sorted({(r, n) for r, n in repositories if isinstance(r, str) and isinstance(n, str)})
        with self._lock:
            self._known = self._load(wanted) if wanted else {}

    def _load(self, only: Optional[List[RepoKey]] = None) -> Dict[RepoKey, Set[str]]:
        known: Dict[RepoKey, Set[str]] = {}
        pipeline = self._pipeline
        if pipeline is None:
            try:
                pipeline = dlt.current.pipeline()
            except Exception:  # used outside a pipeline run: nothing is known
                return known
        try:
            reread = pipeline.get_local_state_val(REREAD_KNOWN_IMAGES)
        except Exception:  # not set
            reread = False
        if reread:
            log.info("%s: a discarded load left images behind: reading every image's details again", self.provider)
            return known
        try:
            with pipeline.sql_client() as client:
                if not client.has_dataset():
                    return known
                table = client.make_qualified_table_name("images")
                # DuckDB: one row per repository with its digests as a list (half the time of a
                # row per digest: registry and repository are not turned into Python strings
                # for every image); other engines: a row per digest
                grouped = getattr(client.capabilities, "sqlglot_dialect", None) == "duckdb"
                select = "registry, repository, list(digest)" if grouped else "registry, repository, digest"
                sql = f"SELECT {select} FROM {table} WHERE provider = %s"
                params: List[Any] = [self.provider]
                if only is not None:
                    # bound parameters (names come from the registry's answers)
                    by_registry: Dict[str, List[str]] = {}
                    for registry, repository in only:
                        by_registry.setdefault(registry, []).append(repository)
                    clauses = []
                    for registry, names in by_registry.items():
                        clauses.append("(registry = %s AND repository IN (" + ", ".join(["%s"] * len(names)) + "))")
                        params += [registry, *names]
                    sql += " AND (" + " OR ".join(clauses) + ")"
                if grouped:
                    sql += " GROUP BY registry, repository"
                rows = client.execute_sql(sql, *params)
        except Exception as exc:  # no destination yet, or no images table: a first load
            log.debug("no known images for %s: %s", self.provider, exc)
            return known
        if grouped:
            for registry, repository, digests in rows or ():
                known.setdefault((registry, repository), set()).update(digests)
            return known
        for registry, repository, digest in rows or ():
            known.setdefault((registry, repository), set()).add(digest)
        return known

    def of(self, registry: str, repository: str) -> Set[str]:
        with self._lock:
            if self._known is None:
                self._known = self._load()
            return self._known.get((registry, repository), set())


class RepositoryStamps:
    """The last loaded update stamp per repository, in the resource's dlt state."""

    def __init__(self, full_refresh: bool = False) -> None:
        self.full_refresh = full_refresh
        self._lock = threading.Lock()

    @staticmethod
    def _key(registry: str, repository: str) -> str:
        return f"{registry}\x1f{repository}"

    def _stamps(self) -> Dict[str, str]:
        return dlt.current.resource_state().setdefault("stamps", {})

    def changed_among(self, registry: str, stamps: Dict[str, Any]) -> List[str]:
        """The repositories of one registry (`{repository: stamp}`) whose stamp differs from the
        stored one (every one on a first load or a full refresh, or without a stamp), in order:
        dlt's resource state is looked up once (each lookup costs about a millisecond)."""
        if self.full_refresh:
            return list(stamps)
        with self._lock:
            stored = self._stamps()
            return [name for name, stamp in stamps.items()
                    if stamp is None or stored.get(self._key(registry, name)) != str(stamp)]

    def remember_all(self, registry: str, stamps: Iterable[Tuple[str, Any]]) -> None:
        """Store the stamps of `(repository, stamp)` pairs of one registry (a missing stamp is not
        stored: that repository is read again next time), with one state lookup."""
        with self._lock:
            stored = self._stamps()
            for name, stamp in stamps:
                if stamp is not None:
                    stored[self._key(registry, name)] = str(stamp)

    def repositories_of(self, registry: str) -> Set[str]:
        """The repositories of `registry` that have a stamp (an earlier load saw them)."""
        prefix = self._key(registry, "")
        with self._lock:
            return {key[len(prefix):] for key in self._stamps() if key.startswith(prefix)}

    def registries(self) -> Set[str]:
        """The registries with at least one stamped repository."""
        with self._lock:
            return {key.split("\x1f", 1)[0] for key in self._stamps()}

    def forget(self, registry: str, repository: str) -> None:
        """Drop a repository's stamp (it vanished: the next time it appears it is read in full)."""
        with self._lock:
            self._stamps().pop(self._key(registry, repository), None)

    def forget_unlisted(self, registry: str, listed: Iterable[str]) -> List[str]:
        """Drop the stamps of `registry`'s repositories missing from `listed` (a full listing).

        Returns:
            The names of the repositories that were dropped, sorted: their tag history is to be closed.
        """
        gone = sorted(self.repositories_of(registry) - set(listed))
        for repository in gone:
            self.forget(registry, repository)
        return gone


class ListingState:
    """Per registry, the fingerprint of each repository's listing at the last load, in the
    resource's dlt state (committed with the data, so a failed load does not advance it).

    A registry with fingerprints is read incrementally: a repository whose fingerprint did not
    change gives no rows, a changed one is re-emitted with a repository scope marker, and one
    no longer listed gets a marker alone (its tags are retired). A registry without them (a
    first load, or state lost) is emitted in full under one registry marker.
    """

    KEY = "listings"

    def __init__(self) -> None:
        self._incremental: Optional[Set[str]] = None

    def _state(self) -> Dict[str, Dict[str, str]]:
        return dlt.current.resource_state().setdefault(self.KEY, {})

    def begin(self) -> None:
        """Note which registries have fingerprints before this run changes any."""
        if self._incremental is None:
            self._incremental = {registry for registry, repos in self._state().items() if repos}

    def incremental(self, registry: str) -> bool:
        self.begin()
        return registry in (self._incremental or ())

    def most_repositories(self) -> Optional[int]:
        """The most repositories one registry had at the last load; None without state (a
        first load, or state lost), when nothing is known of the registry's size."""
        counts = [len(repos) for repos in self._state().values() if repos]
        return max(counts) if counts else None

    def previous(self, registry: str, repository: str) -> Optional[str]:
        return self._state().get(registry, {}).get(repository)

    def remember(self, registry: str, repository: str, fingerprint: Optional[str]) -> None:
        if fingerprint is not None:
            self._state().setdefault(registry, {})[repository] = fingerprint

    def forget_others(self, registry: str, listed: Any) -> list:
        """Drop the repositories of `registry` not in `listed`; returns their names."""
        repos = self._state().get(registry, {})
        gone = sorted(set(repos).difference(listed))
        for name in gone:
            del repos[name]
        return gone
