"""The emulator seen from outside: Huawei's official SWR client (`huaweicloudsdkswr`) signs with
its own AK/SK signer, calls the emulator and parses its answers into the SDK's models."""

from __future__ import annotations

import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkswr.v2 import (
    ListNamespacesRequest,
    ListReposDetailsRequest,
    ListRepositoryTagsRequest,
    SwrClient,
)

from emulators.inventory import Inventory
from emulators.swr import DEMO_ACCESS_KEY, DEMO_PROJECT_ID, DEMO_SECRET_KEY, add_seed_repository

pytestmark = pytest.mark.peer


def _client(url: str, secret_key: str = DEMO_SECRET_KEY) -> SwrClient:
    credentials = BasicCredentials(DEMO_ACCESS_KEY, secret_key, DEMO_PROJECT_ID)
    return SwrClient.new_builder().with_credentials(credentials).with_endpoints([url]).build()


def test_the_official_sdk_reads_the_emulator(swr_env):
    inventory = Inventory(seed=7, registries=("ns-a", "ns-b"), repositories=6, images=30)
    add_seed_repository(inventory, "ns-a")
    emulator = swr_env(inventory)
    client = _client(emulator.url)

    assert sorted(n.name for n in client.list_namespaces(ListNamespacesRequest()).namespaces) == ["ns-a", "ns-b"]

    names = []
    for offset in range(0, 10, 2):
        answer = client.list_repos_details(ListReposDetailsRequest(namespace="ns-a", offset=str(offset), limit="2"))
        assert answer.content_range.endswith(f"/{len(inventory.registries['ns-a'])}")
        names += [repo.name for repo in answer.body or []]  # the SDK reads an empty array as None
    assert names == sorted(inventory.registries["ns-a"])

    for repo in inventory.repositories():
        answer = client.list_repository_tags(
            ListRepositoryTagsRequest(namespace=repo.registry, repository=repo.name.replace("/", "$"), offset="0", limit="1000")
        )
        assert {tag.tag: tag.digest for tag in answer.body} == repo.tags
        for tag in answer.body:
            assert tag.size == repo.images[tag.digest].content_size
            assert tag.manifest.encode() == repo.images[tag.digest].raw
    assert emulator.counters["list_tags"] == 7


def test_the_emulator_refuses_the_sdk_with_a_wrong_secret(swr_env):
    emulator = swr_env(Inventory(seed=7, registries=("ns-a",), repositories=1, images=2))
    with pytest.raises(ClientRequestException) as info:
        _client(emulator.url, "not-the-secret-key").list_namespaces(ListNamespacesRequest())
    assert info.value.status_code == 401 and info.value.error_code == "APIG.0303"
