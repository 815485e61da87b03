"""The emulator's control endpoints (used by the benchmarks): mutate the inventory, set faults."""

from __future__ import annotations

import json
import urllib.request

import boto3

from emulators.inventory import Inventory


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())


def listing(url: str, region: str, name: str) -> set:
    client = boto3.client("ecr", region_name=region, endpoint_url=url)
    pages = client.get_paginator("list_images").paginate(repositoryName=name, filter={"tagStatus": "ANY"})
    return {(i["imageDigest"], i.get("imageTag")) for page in pages for i in page["imageIds"]}


def test_mutate_endpoint_changes_what_is_served(ecr_env):
    inventory = Inventory(seed=2, registries=("us-east-1",), repositories=1, images=30)
    emulator = ecr_env(inventory)
    repo = next(inventory.repositories())
    before = listing(emulator.url, "us-east-1", repo.name)  # also fills the emulator's derived caches
    assert post(emulator.url + "/_emulator/mutate", {"push_images": 2, "move_tags": 3}) == {
        "changed": {"move_tags": 3, "push_images": 2}
    }
    after = listing(emulator.url, "us-east-1", repo.name)
    expected = {(d, t) for d in repo.images for t in (repo.tags_of(d) or [None])}
    assert after == expected != before


def test_faults_endpoint_sets_faults(ecr_env):
    emulator = ecr_env(Inventory(seed=2, registries=("us-east-1",), repositories=1, images=3))
    answer = post(emulator.url + "/_emulator/faults", {"latency_ms": 5, "throttle_every": 0})
    assert answer["faults"]["latency_ms"] == 5.0 and emulator.faults.latency_ms == 5.0
