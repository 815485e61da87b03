"""Yandex Cloud credentials → IAM tokens for `Authorization: Bearer`.

Three ways Yandex users hold credentials, one `TokenSource` each:
- `StaticToken`: an IAM token given as is (`yc iam create-token`); it cannot be renewed.
- `ServiceAccountKeyToken`: a service-account authorized key (`yc iam key create`): a JWT signed
  PS256 with the key is exchanged at the IAM endpoint for a token, renewed before it expires.
- `OAuthToken`: a Yandex Passport OAuth token exchanged the same way (deprecated by Yandex).

`BearerAuth` puts the token on every request and, when the API answers 401 to a renewable token,
gets a new token and sends the request once more (a token can expire, or be revoked, mid-run).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import warnings
from typing import Any, Callable, Dict, Optional

import jwt
import requests

from ..errors import AuthError, ConfigError, register_secret
from ..values import BadValue, to_time
from .settings import (
    JWT_AUDIENCE,
    JWT_LIFETIME_S,
    PROVIDER,
    TOKEN_REFRESH_AFTER_S,
    TOKEN_REFRESH_SHARE,
)

log = logging.getLogger("registry_etl.yandex.auth")

Clock = Callable[[], float]


def _now() -> float:
    """The clock tokens are timed by (looked up at each call, so tests can move it)."""
    return time.time()


class TokenSource:
    """Hands out a current IAM token."""

    renewable = False
    description = "IAM token"

    def token(self) -> str:
        raise NotImplementedError

    def invalidate(self, token: str) -> None:
        """The API refused `token`: the next `token()` call must not return it again."""


class StaticToken(TokenSource):
    """An IAM token used as given (it lives up to 12 hours and cannot be renewed here)."""

    description = "IAM token (iam_token)"

    def __init__(self, iam_token: str) -> None:
        self._token = iam_token.strip()
        register_secret(self._token)

    def token(self) -> str:
        return self._token


class ExchangedToken(TokenSource):
    """A token got from the IAM endpoint, kept until it is due for renewal."""

    renewable = True

    def __init__(self, iam_url: str, session: Optional[requests.Session] = None, clock: Optional[Clock] = None) -> None:
        self.iam_url = iam_url
        self.session = session or requests.Session()
        self._clock = clock
        self._token: Optional[str] = None
        self._renew_at = 0.0
        self.expires_at: Optional[float] = None
        self.exchanges = 0
        self._lock = threading.Lock()

    def clock(self) -> float:
        return self._clock() if self._clock else _now()

    def exchange_body(self) -> Dict[str, Any]:
        raise NotImplementedError

    def token(self) -> str:
        with self._lock:
            if self._token is None or self.clock() >= self._renew_at:
                self._exchange()
            assert self._token is not None
            return self._token

    def invalidate(self, token: str) -> None:
        with self._lock:
            if self._token == token:
                self._token = None

    def _exchange(self) -> None:
        call = f"IAM token exchange at {self.iam_url} ({self.description})"
        try:
            response = self.session.post(self.iam_url, json=self.exchange_body(), timeout=30)
        except requests.RequestException as exc:
            raise AuthError(PROVIDER, call, f"{type(exc).__name__}: {exc}", hint="Check iam_url and the network.") from None
        if response.status_code != 200:
            raise AuthError(
                PROVIDER,
                call,
                describe_status(response),
                status=response.status_code,
                hint=f"Check the {self.description}: it was refused by the IAM endpoint.",
            )
        try:
            body = response.json()
            token = body["iamToken"]
            expires = to_time(body.get("expiresAt"))
        except (ValueError, KeyError, TypeError, BadValue) as exc:
            raise AuthError(PROVIDER, call, f"the answer holds no usable iamToken ({type(exc).__name__})") from None
        register_secret(token)
        now = self.clock()
        lifetime = (expires.timestamp() - now) if expires else float(TOKEN_REFRESH_AFTER_S)
        self._token = token
        self.expires_at = expires.timestamp() if expires else None
        self._renew_at = now + min(float(TOKEN_REFRESH_AFTER_S), max(0.0, lifetime * TOKEN_REFRESH_SHARE))
        self.exchanges += 1
        log.info("got an IAM token from %s (%s), renewing it in %.0f s", self.iam_url, self.description, self._renew_at - now)


class ServiceAccountKeyToken(ExchangedToken):
    """A service-account authorized key: JWT (PS256, `kid` = key id) → IAM token."""

    def __init__(self, key: Any, iam_url: str, session: Optional[requests.Session] = None, clock: Optional[Clock] = None) -> None:
        super().__init__(iam_url, session, clock)
        self.key = parse_authorized_key(key)
        self.description = f"service-account key {self.key['id']} of {self.key['service_account_id']}"

    def make_jwt(self) -> str:
        now = int(self.clock())
        claims = {
            "iss": self.key["service_account_id"],
            "aud": JWT_AUDIENCE,
            "iat": now,
            "exp": now + JWT_LIFETIME_S,
        }
        return jwt.encode(claims, self.key["private_key"], algorithm="PS256", headers={"kid": self.key["id"], "typ": "JWT"})

    def exchange_body(self) -> Dict[str, Any]:
        return {"jwt": self.make_jwt()}


class OAuthToken(ExchangedToken):
    """A Yandex Passport OAuth token → IAM token (Yandex is retiring this way of signing in)."""

    description = "OAuth token (oauth_token)"

    def __init__(self, oauth_token: str, iam_url: str, session: Optional[requests.Session] = None, clock: Optional[Clock] = None) -> None:
        super().__init__(iam_url, session, clock)
        self.oauth_token = oauth_token.strip()
        register_secret(self.oauth_token)
        message = (
            "Yandex is retiring OAuth tokens for getting IAM tokens; use a service-account "
            "authorized key ([sources.yandex] service_account_key_file) instead"
        )
        warnings.warn(message, DeprecationWarning, stacklevel=2)
        log.warning(message)

    def exchange_body(self) -> Dict[str, Any]:
        return {"yandexPassportOauthToken": self.oauth_token}


def parse_authorized_key(key: Any) -> Dict[str, Any]:
    """The authorized key JSON (`yc iam key create --output key.json`) as a dict, checked."""
    if isinstance(key, (bytes, str)):
        try:
            key = json.loads(key)
        except ValueError:
            raise ConfigError(PROVIDER, "configuration", "service_account_key is not valid JSON") from None
    if not isinstance(key, dict):
        raise ConfigError(PROVIDER, "configuration", "service_account_key must be a JSON object")
    if isinstance(key.get("private_key"), str):
        register_secret(key["private_key"])
        # the PEM body alone, in case a message quotes it without its header lines
        for line in key["private_key"].splitlines():
            register_secret(line if len(line) > 40 else None)
    missing = [name for name in ("id", "service_account_id", "private_key") if not key.get(name)]
    if missing:
        raise ConfigError(PROVIDER, "configuration", f"service_account_key lacks {', '.join(missing)}")
    return key


def load_key_file(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise ConfigError(PROVIDER, "configuration", f"cannot read service_account_key_file {path!r}: {exc.strerror}") from None
    register_secret(text)
    return text


def describe_status(response: requests.Response) -> str:
    """A google.rpc.Status body (`{"code", "message", "details"}`) as one line."""
    from .settings import RPC_CODE_NAMES

    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and ("code" in body or "message" in body):
        code = body.get("code")
        name = RPC_CODE_NAMES.get(code, "") if isinstance(code, int) else ""
        label = f"{name} ({code})" if name else f"code {code}"
        return f"{label}: {body.get('message') or 'no message'}"
    text = (response.text or "").strip()[:300]
    return text or response.reason or "no body"


class BearerAuth(requests.auth.AuthBase):
    """`Authorization: Bearer <IAM token>`; a 401 to a renewable token is retried once with a new one."""

    def __init__(self, source: TokenSource) -> None:
        self.source = source
        self.renewals_after_401 = 0

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.source.token()}"
        request.register_hook("response", self._retry_on_401)
        return request

    def _retry_on_401(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        request = response.request
        if response.status_code != 401 or not self.source.renewable or getattr(request, "_token_renewed", False):
            return response
        old = (request.headers.get("Authorization") or "")[len("Bearer ") :]
        self.source.invalidate(old)
        retry = request.copy()
        retry.headers["Authorization"] = f"Bearer {self.source.token()}"
        retry._token_renewed = True  # type: ignore[attr-defined]
        # drop our own hook from the copy: one renewal per request
        retry.hooks = {"response": [h for h in retry.hooks.get("response", []) if h != self._retry_on_401]}
        response.content  # read the body so the connection can be reused
        response.close()
        self.renewals_after_401 += 1
        log.info("the API refused the IAM token (401): renewed it and sent the request again")
        new_response = response.connection.send(retry, **kwargs)
        new_response.history.append(response)
        new_response.request = retry
        return new_response
