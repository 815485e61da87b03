"""A token server for the distribution token-auth flow, and its registry-side config.

`TokenServer` answers `GET /token?service=&scope=` (basic credentials checked) with a signed
RS256 JWT of the kind `docker-registry` verifies with its `auth.token` config: issuer, audience
(= service), the granted `access`, and a `kid` naming the signing key as libtrust does (the key
id the registry derives from each certificate of its `rootcertbundle`). The registry then
answers 401 with `WWW-Authenticate: Bearer realm=…,service=…,scope=…` until a token comes.

Counters: `token` per issued token; `revoke()` makes the next tokens expire at once (the
registry refuses an expired JWT), so tests can watch the client fetch a new one.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from emulators.base import Emulator, Request, Response

ISSUER = "registry-etl-test-issuer"
SERVICE = "registry-etl-test"


def libtrust_key_id(public_key: Any) -> str:
    """The key id libtrust (and so docker-registry) gives a public key."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    digest = hashlib.sha256(der).digest()[:30]
    text = base64.b32encode(digest).decode().rstrip("=")
    return ":".join(text[i : i + 4] for i in range(0, len(text), 4))


def make_signing_key(workdir: Path) -> Tuple[Any, str, Path]:
    """An RSA key, its libtrust key id, and a self-signed certificate file for the registry."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "registry-etl test token signer")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    path = workdir / "token-signer.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, libtrust_key_id(key.public_key()), path


class TokenServer(Emulator):
    name = "oci-token"

    def __init__(self, workdir: Path, users: Optional[Dict[str, str]] = None, lifetime_s: int = 300) -> None:
        super().__init__()
        self.users = users or {}
        self.lifetime_s = lifetime_s
        self.key, self.kid, self.cert_path = make_signing_key(workdir)
        self.issued: List[Dict[str, Any]] = []
        self.issued_tokens: List[str] = []  # the tokens themselves (a secrets test greps for them)
        self._revoked = threading.Event()

    def registry_config(self) -> Dict[str, str]:
        """The `auth.token` settings for `RegistryProcess(token_auth=…)`."""
        return {"realm": f"{self.url}/token", "service": SERVICE, "issuer": ISSUER, "rootcertbundle": str(self.cert_path)}

    def revoke(self) -> None:
        """From now on tokens are issued already expired... until `unrevoke()`."""
        self._revoked.set()

    def unrevoke(self) -> None:
        self._revoked.clear()

    def operation(self, request: Request) -> str:
        if request.path != "/token":
            raise ValueError(request.path)
        return "token"

    def _user(self, request: Request) -> Optional[str]:
        header = request.header("authorization") or ""
        if not header.lower().startswith("basic "):
            return None
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        if self.users.get(user) != password:
            raise PermissionError(user)
        return user

    def handle(self, request: Request, operation: str) -> Response:
        try:
            user = self._user(request)
        except PermissionError:
            return Response(401, {"errors": [{"code": "UNAUTHORIZED", "message": "invalid username or password"}]})
        if self.users and user is None:
            return Response(401, {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]})
        access = []
        for scope in request.query.get("scope", []):
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        expires = now - 10 if self._revoked.is_set() else now + self.lifetime_s
        claims = {
            "iss": ISSUER,
            "sub": user or "",
            "aud": request.param("service"),
            "exp": expires,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        token = jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid})
        self.issued.append(claims)
        self.issued_tokens.append(token)
        return Response(200, {"token": token, "expires_in": self.lifetime_s, "issued_at": dt.datetime.now(dt.timezone.utc).isoformat()})
