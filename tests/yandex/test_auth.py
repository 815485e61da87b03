"""Units: the JWT of an authorized key, token renewal, the 401 retry, OAuth, key parsing, and the
emulator's side of auth and errors."""

from __future__ import annotations

import base64
import json

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from emulators.inventory import Inventory
from emulators.yandex import API_PREFIX, IAM_PATH, YandexEmulator, make_authorized_key, registry_ids
from sources.errors import AuthError, ConfigError, redact
from sources.yandex.auth import (
    BearerAuth,
    OAuthToken,
    ServiceAccountKeyToken,
    StaticToken,
    parse_authorized_key,
)
from sources.yandex.settings import JWT_AUDIENCE
from tests.yandex.conftest import authorized_key_pair


def _b64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeIam:
    """A requests-like session answering the tokens endpoint, with a chosen lifetime."""

    def __init__(self, clock: FakeClock, lifetime: float) -> None:
        self.clock, self.lifetime, self.bodies = clock, lifetime, []

    def post(self, url, json=None, timeout=None):
        from emulators.yandex import rfc3339_ns

        self.bodies.append(json)
        response = requests.Response()
        response.status_code = 200
        expires = rfc3339_ns(int((self.clock() + self.lifetime) * 10**9))
        response._content = (f'{{"iamToken": "t1.token-{len(self.bodies)}", "expiresAt": "{expires}"}}').encode()
        return response


def test_jwt_is_ps256_with_kid_and_the_documented_claims():
    key_json, public_pem = authorized_key_pair()
    key = json.loads(key_json)
    clock = FakeClock()
    source = ServiceAccountKeyToken(key_json, "http://iam.invalid/iam/v1/tokens", clock=clock)
    token = source.make_jwt()
    header_b64, claims_b64, signature_b64 = token.split(".")
    assert json.loads(_b64(header_b64)) == {"alg": "PS256", "kid": key["id"], "typ": "JWT"}
    assert json.loads(_b64(claims_b64)) == {
        "iss": key["service_account_id"],
        "aud": JWT_AUDIENCE,
        "iat": int(clock.now),
        "exp": int(clock.now) + 3600,
    }
    # RFC 7518 PS256: RSASSA-PSS, SHA-256, MGF1 SHA-256, 32-byte salt; checked with cryptography itself
    load_pem_public_key(public_pem.encode()).verify(
        _b64(signature_b64),
        f"{header_b64}.{claims_b64}".encode(),
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
        hashes.SHA256(),
    )


def test_tokens_are_renewed_after_80_percent_of_their_lifetime_or_an_hour():
    clock = FakeClock()
    iam = FakeIam(clock, lifetime=1000)
    source = ServiceAccountKeyToken(authorized_key_pair()[0], "http://iam.invalid/iam/v1/tokens", session=iam, clock=clock)
    first = source.token()
    clock.now += 799
    assert source.token() == first and len(iam.bodies) == 1
    clock.now += 1
    assert source.token() != first and len(iam.bodies) == 2
    # 12-hour tokens: renewed after one hour
    iam.lifetime = 12 * 3600
    source.invalidate(source.token())
    token = source.token()
    clock.now += 3599
    assert source.token() == token
    clock.now += 1
    assert source.token() != token
    assert all("jwt" in body for body in iam.bodies)


def test_oauth_token_is_exchanged_with_a_deprecation_warning():
    clock = FakeClock()
    iam = FakeIam(clock, lifetime=3600)
    with pytest.warns(DeprecationWarning, match="OAuth"):
        source = OAuthToken("y0_oauth-secret-value-1234", "http://iam.invalid/iam/v1/tokens", session=iam, clock=clock)
    assert source.token() == "t1.token-1"
    assert iam.bodies == [{"yandexPassportOauthToken": "y0_oauth-secret-value-1234"}]
    assert "y0_oauth-secret-value-1234" not in redact("token y0_oauth-secret-value-1234")


def test_authorized_key_errors_do_not_quote_the_key():
    key = json.loads(authorized_key_pair()[0])
    broken = dict(key)
    del broken["service_account_id"]
    with pytest.raises(ConfigError) as info:
        parse_authorized_key(json.dumps(broken))
    assert "service_account_id" in str(info.value)
    assert key["private_key"].splitlines()[1] not in str(info.value)
    with pytest.raises(ConfigError):
        parse_authorized_key("{not json")


@pytest.fixture
def emulator():
    inv = Inventory(seed=1, registries=registry_ids(1, "auth"), repositories=2, images=6)
    emu = YandexEmulator(inv, folders={registry_ids(1, "auth")[0]: "b1gfolder"})
    key = json.loads(authorized_key_pair()[0])
    emu.register_service_account_key(key["id"], key["service_account_id"], authorized_key_pair()[1])
    emu.start()
    yield emu
    emu.stop()


def test_bearer_auth_renews_once_after_a_401(emulator):
    source = ServiceAccountKeyToken(authorized_key_pair()[0], emulator.url + IAM_PATH)
    auth = BearerAuth(source)
    url = emulator.url + API_PREFIX + "/registries"
    assert requests.get(url, params={"folderId": "b1gfolder"}, auth=auth).status_code == 200
    emulator.expire_all_tokens()
    response = requests.get(url, params={"folderId": "b1gfolder"}, auth=auth)
    assert response.status_code == 200 and auth.renewals_after_401 == 1
    assert emulator.token_exchanges["jwt"] == 2
    # a static token cannot be renewed: the 401 stays
    static = BearerAuth(StaticToken("t1.unknown-static-token"))
    response = requests.get(url, params={"folderId": "b1gfolder"}, auth=static)
    assert response.status_code == 401
    assert response.json() == {"code": 16, "message": "The token is invalid", "details": []}


def test_emulator_refuses_a_jwt_signed_by_another_key(emulator):
    key = json.loads(authorized_key_pair()[0])
    impostor, _ = make_authorized_key(key_id=key["id"], service_account_id=key["service_account_id"])
    source = ServiceAccountKeyToken(json.dumps(impostor), emulator.url + IAM_PATH)
    with pytest.raises(AuthError) as info:
        source.token()
    assert info.value.status == 401 and "signature is invalid" in str(info.value)
    # and a JWT that lives longer than an hour
    now = 1_900_000_000
    long_lived = jwt.encode(
        {"iss": key["service_account_id"], "aud": JWT_AUDIENCE, "iat": now, "exp": now + 7200},
        key["private_key"], algorithm="PS256", headers={"kid": key["id"]},
    )
    response = requests.post(emulator.url + IAM_PATH, json={"jwt": long_lived})
    assert response.status_code == 401 and response.json()["code"] == 16


def test_emulator_errors_are_rpc_status_with_mapped_http_codes(emulator):
    emulator.add_iam_token("t1.good-static-token")
    headers = {"Authorization": "Bearer t1.good-static-token"}
    base = emulator.url + API_PREFIX
    big = requests.get(base + "/images", params={"registryId": next(iter(emulator.registries)), "pageSize": 1001}, headers=headers)
    assert big.status_code == 400 and big.json()["code"] == 3
    missing = requests.get(base + "/registries/crpnosuchregistry000", headers=headers)
    assert missing.status_code == 404 and missing.json()["code"] == 5
    anonymous = requests.get(base + "/registries", params={"folderId": "b1gfolder"})
    assert anonymous.status_code == 401 and anonymous.json()["code"] == 16
    page = requests.get(base + "/images", params={"registryId": next(iter(emulator.registries)), "pageSize": 2}, headers=headers).json()
    assert len(page["images"]) == 2 and page["nextPageToken"]
    assert all(isinstance(i["compressedSize"], str) for i in page["images"])
