"""What earlier loads already hold, read from the destination itself.

Digests are immutable, so anything costly per image is fetched once per digest: a source asks
`KnownImages` which digests of a repository are already in the `images` table and fetches
details only for the others. Reading the destination (not a cursor kept in state) means a run
that died before its load never hides data from the next run: what is not in the table is
fetched again.

`RepositoryStamps` keeps, in dlt's resource state, the update stamp each repository had at
the last successful load (NCP `last_updated`, SWR `updated_at`); dlt commits that state with
the data, so a failed load does not advance it.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Dict, Optional, Set, Tuple

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

    def _load(self) -> Dict[RepoKey, Set[str]]:
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
                rows = client.execute_sql(
                    f"SELECT registry, repository, digest FROM {table} WHERE provider = %s", self.provider
                )
        except Exception as exc:  # no destination yet, or no images table: a first load
            log.debug("no known images for %s: %s", self.provider, exc)
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

    def changed(self, registry: str, repository: str, stamp: Any) -> bool:
        """True when `stamp` differs from the stored one (or on a first load / full refresh)."""
        if self.full_refresh or stamp is None:
            return True
        with self._lock:
            stamps = dlt.current.resource_state().setdefault("stamps", {})
            return stamps.get(self._key(registry, repository)) != str(stamp)

    def remember(self, registry: str, repository: str, stamp: Any) -> None:
        if stamp is None:
            return
        with self._lock:
            stamps = dlt.current.resource_state().setdefault("stamps", {})
            stamps[self._key(registry, repository)] = str(stamp)
