"""The ECR source against moto's ECR server, a peer implementation we did not write.

Where moto differs from real ECR (moto 5.2; see shared/reference/test-servers.md), the test
compares against what moto itself reports instead of against real-ECR rules:
- no paging at all (`maxResults`/`nextToken` ignored): one page is all it gives;
- `imageSizeInBytes` is the config size only, not config + layers;
- digests are sha256 of the joined layer digests, not of the manifest bytes;
- moving a tag away deletes the image left untagged.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter

import boto3
import pytest
import requests

from pipelines.load import environment, run_load
from tests.support import current_tags, loaded_layers, new_pipeline, query

pytestmark = pytest.mark.peer


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def moto_url():
    exe = shutil.which("moto_server") or os.path.join(os.path.dirname(sys.executable), "moto_server")
    assert os.path.exists(exe), "moto_server is not installed (dev extra)"
    port = _free_port()
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                requests.get(url + "/moto-api/", timeout=0.5)
                break
            except requests.RequestException:
                time.sleep(0.1)
        else:
            pytest.fail("moto_server did not start")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def _manifest(seed: int) -> dict:
    layers = [
        {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 1000 * (seed + i), "digest": f"sha256:{seed:02d}{i:062d}"}
        for i in range(3)
    ]
    return {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 700 + seed, "digest": f"sha256:c{seed:063d}"},
        "layers": layers,
    }


def test_source_against_moto(tmp_path, moto_url):
    env = {
        "AWS_ACCESS_KEY_ID": "testing-moto-key",
        "AWS_SECRET_ACCESS_KEY": "testing-moto-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
        "SOURCES__ECR__ENDPOINT_URL": moto_url,
        "SOURCES__ECR__REGIONS": '["us-east-1"]',
    }
    with environment(env):
        client = boto3.client("ecr", endpoint_url=moto_url, region_name="us-east-1")
        manifests = {}
        for r, name in enumerate(["team/app", "tools"]):
            client.create_repository(repositoryName=name)
            for i in range(3):
                doc = _manifest(r * 10 + i)
                client.put_image(repositoryName=name, imageManifest=json.dumps(doc), imageTag=f"v{i}")
                manifests[(name, f"v{i}")] = doc
        pipeline = new_pipeline(tmp_path)
        counter = Counter()
        run_load(pipeline, ["ecr"], source_options={"ecr": {"request_counter": counter}})

        described = {
            (name, d["imageDigest"]): d
            for name in ("team/app", "tools")
            for d in client.describe_images(repositoryName=name)["imageDetails"]
        }
    registry = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
    rows = query(pipeline, "SELECT registry, repository, digest, size_bytes FROM images")
    # digests and sizes as moto reports them (its own rules, not ECR's)
    assert {(r[1], r[2]): r[3] for r in rows} == {k: d["imageSizeInBytes"] for k, d in described.items()}
    assert {r[0] for r in rows} == {registry}
    tags = current_tags(pipeline, "ecr")
    assert {(repo, tag) for _, repo, tag in tags} == set(manifests)
    layers = loaded_layers(pipeline, "ecr")
    for (name, tag), doc in manifests.items():
        digest = tags[(registry, name, tag)]
        assert layers[(registry, name, digest)] == [(l["digest"], l["size"]) for l in doc["layers"]]
    assert counter["BatchGetImage"] == 2 and counter["DescribeImages"] == 2
