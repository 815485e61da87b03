"""Untrusted names: repository names and tags are whatever a registry sends. With quotes,
semicolons, spaces, percent signs, `?`, `#`, `..` and non-ASCII they load exactly (so they were
encoded where they went into paths, and bound, not spliced, where they went into SQL: a rerun
finds them in the destination and emits no image again), and no source can hand them to a
shell."""

from __future__ import annotations

import os
import re

import pytest

from tests.reliability.cases import available
from tests.reliability.support import db_path, diff, duplicates, load, serving, snapshot
from tests.support import ROOT, query, table_exists

CASES = available()
ODD_REPOSITORIES = [
    "team/we ird;name",
    "q'uote\"dq/%2F?x=1#frag",
    "юникод/☃-snow",
    "a/../b/./c",
    "x'); DROP TABLE images; --",
]
ODD_TAGS = ["v1 'quoted'", "%00;rm -rf ~", "ünï/cödé?#", "$(touch /tmp/pwned)", "a..b"]


# Tag-listing APIs whose tag records carry an index's manifest but no record of its children:
# SWR (registry-apis.md section 3, seed 004). Its source links the children (`images__manifests`)
# without `images` rows of their own. NCP's tag objects list one `images[]` entry per child, so
# NCP loads the children as images.
CHILDREN_AS_LINKS_ONLY = {"swr"}
# APIs that list an index without naming its children: no `images__manifests` rows (Yandex's
# Image.list lists the children as images of their own, section 1)
NO_INDEX_LINKS = {"yandex"}


def indexes(case, repo):
    """The index digests a source can see: all, or (tag-listing APIs) the tagged ones."""
    seen = set(repo.images) if case.sees_every_manifest else set(repo.tags.values())
    return {digest for digest in seen if repo.images[digest].is_index}


def visible(case, repo):
    """The digests a source loads as `images` rows: all, or (tag-listing APIs) the tagged ones
    and, unless the API names them only inside the index manifest, their children."""
    if case.sees_every_manifest:
        return set(repo.images)
    tagged = set(repo.tags.values())
    if case.provider in CHILDREN_AS_LINKS_ONLY:
        return tagged
    return tagged | {child.digest for d in tagged for child in repo.images[d].children}


def rename(inventory, repo, new_name):
    del inventory.registries[repo.registry][repo.name]
    repo.name = new_name
    inventory.registries[repo.registry][new_name] = repo


@pytest.mark.parametrize("case", [pytest.param(c, id=c.provider) for c in CASES])
def test_odd_names_load_exactly_and_stay_data(tmp_path, case):
    inventory = case.inventory(seed=17, repositories=5, images=25)
    repos = sorted(inventory.repositories(), key=lambda r: (r.registry, r.name))
    for repo, name in zip(repos, ODD_REPOSITORIES):
        rename(inventory, repo, name)
        tag = sorted(repo.tags)[0]
        repo.tags[ODD_TAGS[ODD_REPOSITORIES.index(name)]] = repo.tags.pop(tag)
    with serving(case, inventory) as (emulator, _):
        pipeline, _ = load(tmp_path, case)
        loaded = {name for (name,) in query(pipeline, "SELECT repository FROM repositories")}
        assert loaded == set(ODD_REPOSITORIES)
        tags = {(r, t): d for r, t, d in query(pipeline, "SELECT repository, tag, digest FROM tags WHERE valid_to IS NULL")}
        assert tags == {(repo.name, tag): digest for repo in repos for tag, digest in repo.tags.items()}
        counts = dict(query(pipeline, "SELECT repository, count(*) FROM images GROUP BY 1"))
        assert counts == {repo.name: len(visible(case, repo)) for repo in repos}
        digests = {(r, d) for r, d in query(pipeline, "SELECT repository, digest FROM images")}
        assert digests == {(repo.name, digest) for repo in repos for digest in visible(case, repo)}
        links = {}
        if table_exists(pipeline, "images__manifests"):
            for r, index, child in query(pipeline, "SELECT repository, image_digest, digest FROM images__manifests ORDER BY repository, image_digest, position"):
                links.setdefault((r, index), []).append(child)
        want_links = {(repo.name, d): [c.digest for c in repo.images[d].children] for repo in repos for d in indexes(case, repo)}
        assert want_links  # the inventory has indexes under odd names
        assert links == ({} if case.provider in NO_INDEX_LINKS else want_links)  # each index's children, in order
        first = snapshot(db_path(pipeline), case.volatile)

        emulator.reset_counters()
        pipeline, _ = load(tmp_path, case)  # the destination is asked about these names: by parameters
        rows = pipeline.last_trace.last_normalize_info.row_counts
        assert rows.get("images", 0) == 0, rows  # every digest was found under its odd name
        assert diff(first, snapshot(db_path(pipeline), case.volatile)) == []
        assert all(n == 0 for n in duplicates(db_path(pipeline)).values())
    assert not os.path.exists("/tmp/pwned")


def test_no_source_can_reach_a_shell_or_splice_sql():
    root = os.path.join(ROOT, "sources")
    shell = re.compile(r"\b(subprocess|os\.system|os\.popen|shell\s*=\s*True|eval\(|exec\()")
    # SQL built by formatting: only identifiers dlt qualifies itself and lists of `%s` marks
    formatted = re.compile(r"execute_(?:sql|query)\(\s*f([\"'])(.*?)\1")
    allowed = {"table", "marks", "placeholders"}
    for base, _, files in os.walk(root):
        for name in files:
            if name.endswith(".py"):
                text = open(os.path.join(base, name), encoding="utf-8").read()
                assert not shell.search(text), f"{name} reaches for a shell"
                for _, sql in formatted.findall(text):
                    names = set(re.findall(r"\{(\w+)", sql))
                    assert names <= allowed, f"{name} splices {names - allowed} into SQL: {sql}"
