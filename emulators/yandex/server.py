"""A Yandex Cloud Container Registry emulator: the REST API of `reference/registry-apis.md` §1
and the IAM token endpoint, on one loopback port.

Paths (as on `container-registry.api.cloud.yandex.net` and `iam.api.cloud.yandex.net`):
- `GET /container-registry/v1/registries?folderId&pageSize&pageToken&filter` (Registry.list)
- `GET /container-registry/v1/registries/{registryId}` (Registry.get)
- `GET /container-registry/v1/repositories?registryId|folderId&pageSize&pageToken&filter` (Repository.list)
- `GET /container-registry/v1/images?repositoryName|registryId|folderId&pageSize&pageToken&filter`
  (Image.list, seed 000; the precedence repositoryName > registryId > folderId)
- `POST /iam/v1/tokens` with `{"jwt": …}` (service-account authorized key, PS256, the signature
  verified against the registered public key) or `{"yandexPassportOauthToken": …}`.

Choices where the documents are silent (documented, the client tolerates both readings):
- Names carry the registry id, as in Yandex (`crp…/team/app`): a repository's and an image's
  `name` is `<registry id>/<repository>`; `repositoryName` takes that full name.
- Multi-arch indexes are listed as images without `config` and with no `layers`; their
  children are listed as (untagged) images of their own. An index's `compressedSize` is the sum
  of its children's (config + layers); a single image's is config + layers.
- `createdAt` is rendered the protobuf way: 0, 3, 6 or 9 fractional digits, as needed.
- Page tokens are opaque (base64 of offset and a scope hash); `pageSize` > 1000 is refused.
- A `repositoryName` that does not exist answers NOT_FOUND (5 → 404).
- Images are listed in (name, digest) order.

Errors are `google.rpc.Status` bodies `{"code", "message", "details"}` with the HTTP status of
the code (3→400, 5→404, 7→403, 8→429, 14→503, 16→401). Faults from `emulators.base.Faults`:
throttling answers RESOURCE_EXHAUSTED (429), errors answer UNAVAILABLE (503).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Set, Tuple
from urllib.parse import unquote

import jwt

from ..base import Emulator, Faults, Request, Response
from ..inventory import Image, Inventory, Repository

log = logging.getLogger("registry_etl.emulators.yandex")

API_PREFIX = "/container-registry/v1"
IAM_PATH = "/iam/v1/tokens"
JWT_AUDIENCE = "https://iam.api.cloud.yandex.net/iam/v1/tokens"
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100
DEFAULT_TOKEN_LIFETIME_S = 12 * 3600

# google.rpc.Code -> (name, HTTP status), as the Yandex API gateway maps them
CODES = {
    3: ("INVALID_ARGUMENT", 400),
    5: ("NOT_FOUND", 404),
    7: ("PERMISSION_DENIED", 403),
    8: ("RESOURCE_EXHAUSTED", 429),
    13: ("INTERNAL", 500),
    14: ("UNAVAILABLE", 503),
    16: ("UNAUTHENTICATED", 401),
}

_NAME_FILTER = re.compile(r'^\s*name\s*=\s*"([^"]*)"\s*$')


class RpcError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def rpc_error_response(code: int, message: str) -> Response:
    status = CODES.get(code, ("UNKNOWN", 500))[1]
    return Response(status, {"code": code, "message": message, "details": []})


def stable_id(prefix: str, *parts: str) -> str:
    """A Yandex-looking resource id (20 characters of [a-z0-9]) derived from `parts`."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    alphabet = "abcdefghijklmnopqrstuv0123456789"
    body = "".join(alphabet[b % 32] for b in digest)
    return (prefix + body)[:20]


def rfc3339_ns(epoch_ns: int) -> str:
    """RFC 3339 UTC with 0, 3, 6 or 9 fractional digits (protobuf's JSON rendering)."""
    seconds, nanos = divmod(epoch_ns, 10**9)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    if nanos == 0:
        return base + "Z"
    if nanos % 10**6 == 0:
        return f"{base}.{nanos // 10**6:03d}Z"
    if nanos % 10**3 == 0:
        return f"{base}.{nanos // 10**3:06d}Z"
    return f"{base}.{nanos:09d}Z"


@dataclass
class RegistryInfo:
    id: str
    folder_id: str
    name: str
    status: str = "ACTIVE"
    created_ns: int = 0
    labels: Dict[str, str] = field(default_factory=dict)


@dataclass
class ServiceAccountKey:
    key_id: str
    service_account_id: str
    public_key_pem: str


@dataclass
class IssuedToken:
    token: str
    expires_at: float
    subject: str
    revoked: bool = False


class YandexEmulator(Emulator):
    """Serves an `Inventory` whose registries are Yandex registry ids (`crp…`)."""

    name = "yandex"

    def __init__(
        self,
        inventory: Inventory,
        folders: Optional[Dict[str, str]] = None,
        faults: Optional[Faults] = None,
        iam_tokens: Optional[Dict[str, Optional[float]]] = None,
        oauth_tokens: Optional[Set[str]] = None,
        token_lifetime_s: float = DEFAULT_TOKEN_LIFETIME_S,
        clock: Callable[[], float] = time.time,
        check_auth: bool = True,
    ) -> None:
        """
        Args:
            inventory: The data; its registry names are the registry ids.
            folders: registry id -> folder id (default: all registries in one folder).
            iam_tokens: Static IAM tokens accepted as they are -> expiry (epoch s, None = never).
            oauth_tokens: OAuth tokens the IAM endpoint exchanges.
            token_lifetime_s: Lifetime of the tokens the IAM endpoint issues.
            clock: The emulator's clock (tests move it to expire tokens).
            check_auth: Off: any bearer token is accepted.
        """
        super().__init__(faults)
        self.inventory = inventory
        self.clock = clock
        self.check_auth = check_auth
        self.token_lifetime_s = token_lifetime_s
        default_folder = "b1gemulatorfolder000"
        self.registries: Dict[str, RegistryInfo] = {}
        for index, registry_id in enumerate(inventory.registries):
            self.registries[registry_id] = RegistryInfo(
                id=registry_id,
                folder_id=(folders or {}).get(registry_id, default_folder),
                name=f"registry-{index + 1}",
                created_ns=1_700_000_000 * 10**9 + index * 86_400 * 10**9 + 123_456_000,
                labels={"env": "test", "team": f"team-{index % 2}"} if index % 3 != 2 else {},
            )
        self.service_account_keys: Dict[str, ServiceAccountKey] = {}
        self.oauth_tokens: Set[str] = set(oauth_tokens or ())
        self._tokens: Dict[str, IssuedToken] = {}
        for token, expiry in (iam_tokens or {}).items():
            self._tokens[token] = IssuedToken(token, float("inf") if expiry is None else expiry, "static")
        self.denied_registries: Set[str] = set()  # PERMISSION_DENIED on these registries' images
        # expire every token issued so far once this many API calls have been answered (0 = never)
        self.expire_tokens_after_calls = 0
        self._api_calls = 0
        self.token_exchanges: Dict[str, int] = {"jwt": 0, "oauth": 0}
        self._auth_lock = threading.Lock()

    # ---- setup
    def register_service_account_key(self, key_id: str, service_account_id: str, public_key_pem: str) -> None:
        self.service_account_keys[key_id] = ServiceAccountKey(key_id, service_account_id, public_key_pem)

    def add_iam_token(self, token: str, expires_at: Optional[float] = None) -> None:
        self._tokens[token] = IssuedToken(token, float("inf") if expires_at is None else expires_at, "static")

    def expire_all_tokens(self) -> None:
        with self._auth_lock:
            for issued in self._tokens.values():
                issued.revoked = True

    # ---- protocol
    def operation(self, request: Request) -> str:
        path = request.path
        if path == IAM_PATH and request.method == "POST":
            return "IamToken.create"
        if request.method != "GET" or not path.startswith(API_PREFIX + "/"):
            raise ValueError(f"{request.method} {path}")
        rest = path[len(API_PREFIX) + 1 :]
        if rest == "registries":
            return "Registry.list"
        if rest.startswith("registries/") and rest.count("/") == 1:
            return "Registry.get"
        if rest == "repositories":
            return "Repository.list"
        if rest == "images":
            return "Image.list"
        raise ValueError(path)

    def throttle_response(self, operation: str) -> Response:
        response = rpc_error_response(8, "Quota limit exceeded, try again later")
        response.headers["Retry-After"] = str(self.faults.retry_after_s)
        return response

    def server_error_response(self, operation: str) -> Response:
        return rpc_error_response(14, "Service is temporarily unavailable")

    def handle(self, request: Request, operation: str) -> Response:
        try:
            if operation == "IamToken.create":
                return Response(200, self._create_token(request))
            self._authenticate(request)
            answer = getattr(self, "op_" + operation.replace(".", "_"))(request)
        except RpcError as error:
            return rpc_error_response(error.code, error.message)
        return Response(200, answer)

    # ---- auth
    def _create_token(self, request: Request) -> Dict[str, Any]:
        try:
            body = request.json()
        except ValueError:
            raise RpcError(3, "Request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise RpcError(3, "Request body must be an object")
        if "jwt" in body:
            subject = self._verify_jwt(str(body["jwt"]))
            kind = "jwt"
        elif "yandexPassportOauthToken" in body:
            if body["yandexPassportOauthToken"] not in self.oauth_tokens:
                raise RpcError(16, "The OAuth token is invalid or has expired")
            subject = "oauth-user"
            kind = "oauth"
        else:
            raise RpcError(3, "Exactly one of jwt, yandexPassportOauthToken must be set")
        now = self.clock()
        token = "t1.emu." + secrets.token_urlsafe(24)
        with self._auth_lock:
            self._tokens[token] = IssuedToken(token, now + self.token_lifetime_s, subject)
            self.token_exchanges[kind] += 1
        return {"iamToken": token, "expiresAt": rfc3339_ns(int((now + self.token_lifetime_s) * 10**9))}

    def _verify_jwt(self, token: str) -> str:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise RpcError(16, f"JWT is malformed: {exc}") from None
        if header.get("alg") != "PS256":
            raise RpcError(16, f"JWT algorithm must be PS256, not {header.get('alg')!r}")
        key = self.service_account_keys.get(header.get("kid") or "")
        if key is None:
            raise RpcError(16, f"Unknown authorized key id {header.get('kid')!r}")
        try:
            claims = jwt.decode(
                token,
                key.public_key_pem,
                algorithms=["PS256"],
                audience=JWT_AUDIENCE,
                issuer=key.service_account_id,
                options={"require": ["iat", "exp", "iss", "aud"], "verify_iat": False},
                leeway=0,
            )
        except jwt.ExpiredSignatureError:
            raise RpcError(16, "JWT has expired") from None
        except jwt.InvalidSignatureError:
            raise RpcError(16, "JWT signature is invalid") from None
        except jwt.PyJWTError as exc:
            raise RpcError(16, f"JWT is invalid: {exc}") from None
        if claims["exp"] - claims["iat"] > 3600:
            raise RpcError(16, "JWT lifetime must not exceed 1 hour")
        return key.service_account_id

    def _authenticate(self, request: Request) -> None:
        with self._auth_lock:
            self._api_calls += 1
            if self.expire_tokens_after_calls and self._api_calls > self.expire_tokens_after_calls:
                # once: every token issued so far expires, as if the run outlived them
                self.expire_tokens_after_calls = 0
                for issued in self._tokens.values():
                    issued.revoked = True
        if not self.check_auth:
            return
        header = request.header("authorization") or ""
        if not header.startswith("Bearer "):
            raise RpcError(16, "Authentication required: no bearer token in the Authorization header")
        token = header[len("Bearer ") :].strip()
        with self._auth_lock:
            issued = self._tokens.get(token)
        if issued is None:
            raise RpcError(16, "The token is invalid")
        if issued.revoked or issued.expires_at <= self.clock():
            raise RpcError(16, "The token has expired")

    # ---- paging
    def _page(self, items: List[Any], request: Request, scope: str) -> Tuple[List[Any], Optional[str]]:
        raw_size = request.param("pageSize") or "0"
        try:
            size = int(raw_size)
        except ValueError:
            raise RpcError(3, f"Invalid pageSize: {raw_size!r}") from None
        if size < 0 or size > MAX_PAGE_SIZE:
            raise RpcError(3, f"Request validation error: PageSize: invalid value {size}: must be <= {MAX_PAGE_SIZE}")
        size = size or DEFAULT_PAGE_SIZE
        offset = 0
        token = request.param("pageToken")
        if token:
            offset = self._read_token(token, scope)
        page = items[offset : offset + size]
        more = offset + size < len(items)
        return page, (self._make_token(offset + size, scope) if more else None)

    @staticmethod
    def _scope_hash(scope: str) -> str:
        return hashlib.sha256(scope.encode()).hexdigest()[:12]

    def _make_token(self, offset: int, scope: str) -> str:
        raw = f"{offset}:{self._scope_hash(scope)}"
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    def _read_token(self, token: str, scope: str) -> int:
        try:
            padded = token + "=" * (-len(token) % 4)
            offset, check = base64.urlsafe_b64decode(padded.encode()).decode().split(":")
            if check != self._scope_hash(scope):
                raise ValueError("scope")
            return int(offset)
        except Exception:
            raise RpcError(3, "Request validation error: PageToken: invalid page token") from None

    @staticmethod
    def _name_filter(request: Request) -> Optional[str]:
        text = request.param("filter")
        if not text:
            return None
        match = _NAME_FILTER.match(text)
        if not match:
            raise RpcError(3, f"Invalid filter expression: {text!r}")
        return match.group(1)

    # ---- rendering
    def _registry_json(self, info: RegistryInfo) -> Dict[str, Any]:
        return {
            "id": info.id,
            "folderId": info.folder_id,
            "name": info.name,
            "status": info.status,
            "createdAt": rfc3339_ns(info.created_ns),
            "labels": dict(info.labels),
        }

    def _blob_json(self, blob: Any) -> Dict[str, Any]:
        return {"id": stable_id("crp", "blob", blob.digest), "digest": blob.digest, "size": str(blob.size), "urls": []}

    @staticmethod
    def compressed_size(image: Image) -> int:
        if image.is_index:
            return sum(child.content_size for child in image.children)
        return image.content_size

    def image_json(self, repo: Repository, image: Image) -> Dict[str, Any]:
        full_name = f"{repo.registry}/{repo.name}"
        doc: Dict[str, Any] = {
            "id": stable_id("crp", "image", full_name, image.digest),
            "name": full_name,
            "digest": image.digest,
            "compressedSize": str(self.compressed_size(image)),
            "layers": [self._blob_json(layer) for layer in image.layers],
            "tags": repo.tags_of(image.digest),
            "createdAt": rfc3339_ns(image.created_ns),
        }
        if image.config is not None:
            doc["config"] = self._blob_json(image.config)
        return doc

    # ---- operations
    def _registries_in(self, folder_id: str) -> List[RegistryInfo]:
        return sorted((r for r in self.registries.values() if r.folder_id == folder_id), key=lambda r: r.id)

    def _registry(self, registry_id: str) -> RegistryInfo:
        info = self.registries.get(registry_id)
        if info is None:
            raise RpcError(5, f"Registry {registry_id} not found")
        return info

    def op_Registry_list(self, request: Request) -> Dict[str, Any]:
        folder_id = request.param("folderId")
        if not folder_id:
            raise RpcError(3, "Request validation error: FolderId: required")
        registries = self._registries_in(folder_id)
        name = self._name_filter(request)
        if name is not None:
            registries = [r for r in registries if r.name == name]
        page, token = self._page(registries, request, f"registries/{folder_id}/{name}")
        return {"registries": [self._registry_json(r) for r in page], **({"nextPageToken": token} if token else {})}

    def op_Registry_get(self, request: Request) -> Dict[str, Any]:
        registry_id = unquote(request.path.rsplit("/", 1)[1])
        return self._registry_json(self._registry(registry_id))

    def _repositories_of(self, request: Request) -> List[Repository]:
        registry_id = request.param("registryId")
        if registry_id:
            self._registry(registry_id)
            if registry_id in self.denied_registries:
                raise RpcError(7, f"Permission denied to registry {registry_id}")
            return sorted(self.inventory.registries[registry_id].values(), key=lambda r: r.name)
        folder_id = request.param("folderId")
        if not folder_id:
            raise RpcError(3, "Request validation error: one of registryId, folderId is required")
        repos: List[Repository] = []
        for info in self._registries_in(folder_id):
            if info.id not in self.denied_registries:
                repos.extend(sorted(self.inventory.registries[info.id].values(), key=lambda r: r.name))
        return repos

    def op_Repository_list(self, request: Request) -> Dict[str, Any]:
        repos = self._repositories_of(request)
        name = self._name_filter(request)
        if name is not None:
            repos = [r for r in repos if f"{r.registry}/{r.name}" == name]
        scope = f"repositories/{request.param('registryId')}/{request.param('folderId')}/{name}"
        page, token = self._page(repos, request, scope)
        out = [{"name": f"{r.registry}/{r.name}", "id": stable_id("crp", "repository", r.registry, r.name)} for r in page]
        return {"repositories": out, **({"nextPageToken": token} if token else {})}

    def op_Image_list(self, request: Request) -> Dict[str, Any]:
        repository_name = request.param("repositoryName")
        if repository_name:
            registry_id, _, name = repository_name.partition("/")
            self._registry(registry_id)
            if registry_id in self.denied_registries:
                raise RpcError(7, f"Permission denied to repository {repository_name}")
            repo = self.inventory.registries[registry_id].get(name)
            if repo is None:
                raise RpcError(5, f"Repository {repository_name} not found")
            repos = [repo]
        else:
            repos = self._repositories_of(request)
        name = self._name_filter(request)
        listed = [
            repo
            for repo in sorted(repos, key=lambda r: (r.registry, r.name))
            if name is None or f"{repo.registry}/{repo.name}" == name
        ]
        scope = f"images/{repository_name}/{request.param('registryId')}/{request.param('folderId')}/{name}"
        page, token = self._page(_ImageSequence(listed), request, scope)
        return {
            "images": [self.image_json(repo, image) for repo, image in page],
            **({"nextPageToken": token} if token else {}),
        }


class _ImageSequence:
    """The (repository, image) pairs of `repositories` in listing order (repository, then
    digest), sliced without building the whole list: a page of a large folder costs its own
    size, not the folder's (building every pair for each page made a listing quadratic)."""

    def __init__(self, repositories: List[Repository]) -> None:
        self._repositories = repositories
        self._total = sum(len(repo.images) for repo in repositories)

    def __len__(self) -> int:
        return self._total

    def __getitem__(self, window: slice) -> List[Tuple[Repository, Image]]:
        start, stop, _ = window.indices(self._total)
        out: List[Tuple[Repository, Image]] = []
        offset = 0
        for repo in self._repositories:
            count = len(repo.images)
            if offset + count > start and offset < stop:
                digests = sorted(repo.images)[max(0, start - offset) : stop - offset]
                out.extend((repo, repo.images[digest]) for digest in digests)
            offset += count
            if offset >= stop:
                break
        return out
