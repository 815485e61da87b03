"""The NCP emulator seen from outside: paths, encoding, paging envelope, auth checks, error bodies."""

from __future__ import annotations

import time

import pytest
import requests

from emulators.inventory import Inventory
from emulators.ncp import DEMO_ACCESS_KEY, DEMO_SECRET_KEY, NcpEmulator
from sources.ncp.helpers import NcpSignatureV2


@pytest.fixture(scope="module")
def emulator():
    inventory = Inventory(seed=4, registries=("reg-a",), repositories=3, images=30)
    with NcpEmulator(inventory) as started:
        yield started


def get(emulator, path, secret=DEMO_SECRET_KEY, **params):
    auth = NcpSignatureV2(DEMO_ACCESS_KEY, secret)
    return requests.get(emulator.url + path, params=params, auth=auth, timeout=10)


def test_envelope_is_one_based_with_page_numbers(emulator):
    repos = emulator.inventory.registries["reg-a"]
    first = get(emulator, "/ncr/api/v2/repositories/reg-a", page=1, pagesize=2).json()
    assert (first["count"], first["next"], first["previous"]) == (len(repos), 2, None)
    assert [r["name"] for r in first["results"]] == sorted(repos)[:2]
    last = get(emulator, "/ncr/api/v2/repositories/reg-a", page=2, pagesize=2).json()
    assert (last["next"], last["previous"], len(last["results"])) == (None, 1, 1)
    bad = get(emulator, "/ncr/api/v2/repositories/reg-a", page=0)
    assert bad.status_code == 400 and bad.json()["error"]["errorCode"] == "100"


def test_image_names_must_be_percent_encoded(emulator):
    name = next(n for n in emulator.inventory.registries["reg-a"] if "/" in n)
    encoded = name.replace("/", "%2F")
    ok = get(emulator, f"/ncr/api/v2/repositories/reg-a/{encoded}/tags")
    assert ok.status_code == 200
    assert sorted(t["name"] for t in ok.json()["results"]) == sorted(emulator.inventory.registries["reg-a"][name].tags)[:10]
    raw = get(emulator, f"/ncr/api/v2/repositories/reg-a/{name}/tags")
    assert raw.status_code == 404 and raw.json()["error"]["errorCode"] == "300"


def test_single_tag_and_multi_arch_entries(emulator):
    for repo in emulator.inventory.registries["reg-a"].values():
        for tag, digest in repo.tags.items():
            doc = get(emulator, f"/ncr/api/v2/repositories/reg-a/{repo.name.replace('/', '%2F')}/tags/{tag}").json()
            image = repo.images[digest]
            assert doc["digest"] == digest and doc["name"] == tag
            expected = [c.digest for c in image.children] if image.is_index else [digest]
            assert [entry["digest"] for entry in doc["images"]] == expected


def test_auth_failures_use_the_gateway_body(emulator):
    wrong = get(emulator, "/ncr/api/v2/repositories", secret="not-the-secret")
    assert wrong.status_code == 401
    assert wrong.json()["error"] == {"errorCode": "200", "message": "Authentication Failed", "details": "Signature does not match."}
    missing = requests.get(emulator.url + "/ncr/api/v2/repositories", timeout=10)
    assert missing.status_code == 401 and missing.json()["error"]["errorCode"] == "200"
    stale = requests.get(
        emulator.url + "/ncr/api/v2/repositories",
        auth=NcpSignatureV2(DEMO_ACCESS_KEY, DEMO_SECRET_KEY, clock=lambda: time.time() - 301),
        timeout=10,
    )
    assert stale.status_code == 401 and "Timestamp" in stale.json()["error"]["details"]


def test_last_updated_moves_when_tags_change(emulator):
    repo = sorted(emulator.inventory.registries["reg-a"].values(), key=lambda r: r.name)[0]
    before = {d["name"]: d["last_updated"] for d in get(emulator, "/ncr/api/v2/repositories/reg-a").json()["results"]}
    repo.tags["moved-here"] = next(iter(repo.tags.values()))
    after = {d["name"]: d["last_updated"] for d in get(emulator, "/ncr/api/v2/repositories/reg-a").json()["results"]}
    assert after[repo.name] > before[repo.name]
    assert {k: v for k, v in after.items() if k != repo.name} == {k: v for k, v in before.items() if k != repo.name}
    del repo.tags["moved-here"]


def test_counters_endpoint_lists_tag_requests_per_image(emulator):
    name = sorted(emulator.inventory.registries["reg-a"])[0]
    get(emulator, f"/ncr/api/v2/repositories/reg-a/{name.replace('/', '%2F')}/tags")
    counters = requests.get(emulator.url + "/_emulator/counters", timeout=10).json()
    assert counters["tag_requests"][f"reg-a/{name}"] >= 1
    assert counters["requests"]["ListTags"] >= 1
