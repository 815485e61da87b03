"""SWR auth: our AK/SK signer against the official `huaweicloudsdkcore` signer, the emulator's
verification, and what a user sees when the credentials are wrong or expired."""

from __future__ import annotations

import json
import os
import random
import string
from datetime import datetime, timedelta, timezone
from urllib.parse import quote, urlsplit

import pytest
import requests

from emulators.inventory import Inventory
from emulators.swr import DEMO_ACCESS_KEY, DEMO_PROJECT_ID, DEMO_SECRET_KEY, DEMO_TOKEN
from pipelines.cli import EXIT_AUTH, main
from sources.swr.helpers import AkSkAuth, TokenAuth, tags_path
from tests.support import new_pipeline
from tests.swr.conftest import load

# the oracle: the dev extra installs it, and CI must fail rather than skip without it
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer import signer as sdk_signer

NAME_CHARS = string.ascii_lowercase + string.digits + "-_.~$"
VALUE_CHARS = string.ascii_letters + string.digits + " -_.~$+=&/:,%@!*'()"


def _word(rng: random.Random, chars: str, low: int = 1, high: int = 12) -> str:
    return "".join(rng.choice(chars) for _ in range(rng.randint(low, high)))


def _random_request(rng: random.Random):
    """A request as a client of SWR might send it: (method, url, params list, body, content type, project)."""
    host = rng.choice(["swr-api.cn-north-4.myhuaweicloud.com", "127.0.0.1:8443", "swr-api.ap-southeast-1.myhuaweicloud.com"])
    kind = rng.random()
    if kind < 0.5:  # the tag-list path: namespace, and a repository whose '/' becomes '$'
        repository = "/".join(_word(rng, NAME_CHARS) for _ in range(rng.randint(1, 3)))
        path = tags_path(_word(rng, NAME_CHARS), repository)
    else:  # any path, segments quoted as the SDK quotes path parameters
        path = "/" + "/".join(quote(_word(rng, NAME_CHARS), safe="") for _ in range(rng.randint(0, 5)))
        if rng.random() < 0.2:
            path += "/"
    params = [(_word(rng, string.ascii_lowercase + "_"), _word(rng, VALUE_CHARS, 0, 10)) for _ in range(rng.randint(0, 6))]
    rng.shuffle(params)  # any order: the signature sorts them
    method = rng.choice(["GET", "GET", "GET", "DELETE", "POST", "PUT"])
    body, content_type = None, None
    if method in ("POST", "PUT"):
        body = rng.choice([b"", json.dumps({"namespace": _word(rng, NAME_CHARS), "n": rng.randint(0, 9)}).encode()])
        content_type = "application/json;charset=UTF-8"
    elif rng.random() < 0.3:
        body = b""
    project = DEMO_PROJECT_ID if rng.random() < 0.6 else None
    return method, f"https://{host}{path}", params, body, content_type, project


def test_signer_matches_the_official_sdk_on_generated_requests():
    rng = random.Random(2024)
    for _ in range(400):
        method, url, params, body, content_type, project = _random_request(rng)
        when = datetime(2020, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=rng.randrange(10**9))
        headers = {"Content-Type": content_type} if content_type else {}
        prepared = requests.Request(method, url, params=params, data=body, headers=headers).prepare()
        AkSkAuth("AKTEST1234567890", "SKtest-secret-0987654321", project, clock=lambda: when)(prepared)

        split = urlsplit(url)
        sdk_headers = {"X-Sdk-Date": when.strftime("%Y%m%dT%H%M%SZ")}
        if project:
            sdk_headers["X-Project-Id"] = project
        if content_type:
            sdk_headers["Content-Type"] = content_type
        sdk_request = SdkRequest(
            method=method, schema="https", host=split.netloc, resource_path=split.path,
            query_params=list(params), header_params=sdk_headers, body=body or "",
        )
        sdk_signer.Signer(BasicCredentials("AKTEST1234567890", "SKtest-secret-0987654321")).sign(sdk_request)
        assert prepared.headers["Authorization"] == sdk_request.header_params["Authorization"], (method, url, params)
        assert prepared.headers["X-Sdk-Date"] == sdk_headers["X-Sdk-Date"]


def test_emulator_accepts_what_the_sdk_and_our_signer_sign_and_refuses_tampering(swr_env):
    inventory = Inventory(seed=1, registries=("ns-a",), repositories=3, images=12)
    emulator = swr_env(inventory)
    repo = next(r for r in inventory.repositories() if "/" in r.name)
    url = emulator.url + tags_path("ns-a", repo.name)
    params = {"offset": "0", "limit": "2", "order_column": "tag"}

    ours = requests.get(url, params=params, auth=AkSkAuth(DEMO_ACCESS_KEY, DEMO_SECRET_KEY, DEMO_PROJECT_ID))
    assert ours.status_code == 200 and len(ours.json()) == 2

    split = urlsplit(url)
    sdk_request = SdkRequest(method="GET", schema="http", host=split.netloc, resource_path=split.path,
                             query_params=list(params.items()), header_params={"X-Project-Id": DEMO_PROJECT_ID}, body="")
    sdk_signer.Signer(BasicCredentials(DEMO_ACCESS_KEY, DEMO_SECRET_KEY)).sign(sdk_request)
    sdk = requests.get(emulator.url + sdk_request.uri, headers=sdk_request.header_params)
    assert sdk.status_code == 200 and sdk.json() == ours.json()

    tampered = requests.Request("GET", url, params=params, auth=AkSkAuth(DEMO_ACCESS_KEY, DEMO_SECRET_KEY)).prepare()
    tampered.prepare_url(url, {**params, "limit": "3"})
    refused = requests.Session().send(tampered)
    assert refused.status_code == 401 and refused.json()["error_code"] == "APIG.0303"

    assert requests.get(url, auth=TokenAuth(DEMO_TOKEN)).status_code == 200
    assert requests.get(url, auth=TokenAuth("not-a-token")).json()["error_code"] == "APIG.0301"


def _cli_load(tmp_path, capsys):
    code = main(["load", "swr", "--quiet", "--duckdb", str(tmp_path / "registry_etl.duckdb"),
                 "--pipelines-dir", str(tmp_path / "pipelines")])
    out = capsys.readouterr()
    return code, out.out + out.err


def _assert_no_secret(text: str, tmp_path, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text
    for root, _, files in os.walk(tmp_path):
        for name in files:
            with open(os.path.join(root, name), "rb") as handle:
                data = handle.read()
            for secret in secrets:
                assert secret.encode() not in data, f"{secret!r} found in {name}"


def test_wrong_secret_key_is_a_clear_auth_error_without_the_secret(tmp_path, swr_env, monkeypatch, capsys, caplog):
    swr_env(Inventory(seed=1, registries=("ns-a",), repositories=2, images=6))
    wrong = "wrong-secret-key-value-4711"
    monkeypatch.setenv("SOURCES__SWR__SECRET_KEY", wrong)
    code, output = _cli_load(tmp_path, capsys)
    assert code == EXIT_AUTH
    assert "APIG.0303" in output and "list_namespaces" in output and "secret_key" in output
    _assert_no_secret(output + caplog.text, tmp_path, wrong)


def test_expired_token_is_a_clear_auth_error_without_the_token(tmp_path, swr_env, capsys, caplog):
    emulator = swr_env(Inventory(seed=1, registries=("ns-a",), repositories=2, images=6), auth="token")
    emulator.expire_token(DEMO_TOKEN)
    code, output = _cli_load(tmp_path, capsys)
    assert code == EXIT_AUTH
    assert "APIG.0307" in output and "expired" in output and "auth_token" in output
    _assert_no_secret(output + caplog.text, tmp_path, DEMO_TOKEN)


def test_clock_skew_over_15_minutes_is_refused(tmp_path, swr_env):
    emulator = swr_env(Inventory(seed=1, registries=("ns-a",), repositories=2, images=6))
    emulator.clock_offset = timedelta(minutes=16)
    with pytest.raises(Exception) as info:
        load(new_pipeline(tmp_path))
    from pipelines.cli import _root_cause
    from sources.errors import AuthError

    error = _root_cause(info.value)
    assert isinstance(error, AuthError) and "15 minutes" in str(error)
    # within the limit, the same request passes
    emulator.clock_offset = timedelta(minutes=14)
    url = emulator.url + "/v2/manage/namespaces"
    assert requests.get(url, auth=AkSkAuth(DEMO_ACCESS_KEY, DEMO_SECRET_KEY)).status_code == 200


def test_secrets_stay_out_of_the_dataset_and_the_pipeline_state(tmp_path, swr_env):
    inventory = Inventory(seed=1, registries=("ns-a",), repositories=2, images=6)
    swr_env(inventory)
    load(new_pipeline(tmp_path))
    _assert_no_secret("", tmp_path, DEMO_SECRET_KEY, DEMO_PROJECT_ID)


def test_missing_credentials_is_a_config_error(tmp_path, swr_env, monkeypatch, capsys):
    swr_env(Inventory(seed=1, registries=("ns-a",), repositories=1, images=2))
    monkeypatch.delenv("SOURCES__SWR__SECRET_KEY")
    code, output = _cli_load(tmp_path, capsys)
    assert code == 2 and "access_key and secret_key" in output
