"""An emulator of the Huawei Cloud SWR API (shared/reference/registry-apis.md section 3).

It serves an `Inventory` whose registries are SWR namespaces:

- `GET /v2/manage/namespaces` -> `{"namespaces": [{id, name, creator_name, auth}]}`
- `GET /v2/manage/repos?namespace&offset&limit` -> a bare JSON array of repositories,
  `Content-Range: <offset>-<count>/<total>`; without `offset` every record comes at once
- `GET /v2/manage/namespaces/{ns}/repos/{repo}/tags?offset&limit` -> a bare array of tag
  records (seed 004): capitalised `Tag`, the manifest as a JSON string, times in UTC with 0 or 9
  fractional digits; a `/` in a repository name arrives as `$`

Auth: `X-Auth-Token` (tokens may be expired on request) or an SDK-HMAC-SHA256 AK/SK signature,
verified from the raw request; an `X-Sdk-Date` more than 15 minutes off is refused (APIG.0303).
Errors come as SWR does: arrays `[{"errorCode", "errorMessage"}]` from the service and objects
`{"error_code", "error_msg", "request_id"}` from the API gateway.

Choices where the API documentation is silent (documented, the client tolerates both readings):
- a repository's `size` is the sum of the sizes of its tagged images (each digest once) and
  `num_images` its number of tags;
- the `size` of a manifest list is its largest child's (config + layers), as ECR reports;
- `updated_at` of a repository advances (by one second past the last value) whenever its tags
  or images change, as SWR's does on a push or a tag deletion;
- a tag's `created` is the push time of the image it points at, `updated` the time it was last
  pointed somewhere.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import re
import threading
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import parse_qsl, quote, unquote

from emulators.base import Emulator, Faults, Request, Response
from emulators.inventory import Inventory, Repository

SKEW = timedelta(minutes=15)
MAX_LIMIT = 1000
_TAGS_PATH = re.compile(r"^/v2/manage/namespaces/([^/]+)/repos/([^/]+)/tags/?$")
_AUTHORIZATION = re.compile(
    r"^SDK-HMAC-SHA256\s+Access=([^,\s]+),\s*SignedHeaders=([^,\s]+),\s*Signature=([0-9a-fA-F]+)\s*$"
)
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def rfc3339(ns: int) -> str:
    """UTC time with 9 fractional digits, or none when the nanoseconds are zero (as SWR sends)."""
    seconds, nanos = divmod(ns, 10**9)
    text = datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{nanos:09d}Z" if nanos else f"{text}Z"


class SwrEmulator(Emulator):
    """SWR's namespace, repository and tag listings over an `Inventory`."""

    name = "swr"

    def __init__(
        self,
        inventory: Inventory,
        *,
        region: str = "cn-north-4",
        credentials: Optional[Dict[str, str]] = None,
        tokens: Optional[Dict[str, Optional[datetime]]] = None,
        faults: Optional[Faults] = None,
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ) -> None:
        super().__init__(faults)
        self.inventory = inventory
        self.region = region
        self.credentials = dict(credentials or {})  # access key -> secret key
        self.tokens = dict(tokens or {})  # token -> expiry (None: never)
        self.clock = clock
        self.clock_offset = timedelta(0)  # tests move the server's clock to check the skew limit
        self.host = f"swr.{region}.myhuaweicloud.com"
        self._state_lock = threading.Lock()
        self._repo_stamps: Dict[Tuple[str, str], Tuple[str, int]] = {}
        self._tag_times: Dict[Tuple[str, str, str], Tuple[str, int]] = {}
        self._ids: Dict[Any, int] = {}
        self._next_id = itertools.count(1)

    # ---- test helpers
    def expire_token(self, token: str) -> None:
        self.tokens[token] = self.now() - timedelta(seconds=1)

    def now(self) -> datetime:
        return self.clock() + self.clock_offset

    def repository_updated_ns(self, repo: Repository) -> int:
        """The `updated_at` the emulator reports for a repository now (see the module doc)."""
        with self._state_lock:
            return self._stamp(repo)

    def tag_updated_ns(self, repo: Repository, tag: str) -> int:
        with self._state_lock:
            return self._tag_time(repo, tag)

    # ---- routing
    def operation(self, request: Request) -> str:
        if request.method != "GET":
            raise ValueError(f"{request.method} {request.path}")
        if request.path.rstrip("/") == "/v2/manage/namespaces":
            return "list_namespaces"
        if request.path.rstrip("/") == "/v2/manage/repos":
            return "list_repositories"
        if _TAGS_PATH.match(request.path):
            return "list_tags"
        raise ValueError(request.path)

    def handle(self, request: Request, operation: str) -> Response:
        refused = self._authenticate(request)
        if refused is not None:
            return refused
        if operation == "list_namespaces":
            return self._namespaces(request)
        if operation == "list_repositories":
            return self._repositories(request)
        return self._tags(request)

    # ---- error shapes
    @staticmethod
    def gateway_error(status: int, code: str, message: str) -> Response:
        return Response(status, {"error_code": code, "error_msg": message, "request_id": uuid.uuid4().hex})

    @staticmethod
    def service_error(status: int, code: str, message: str) -> Response:
        return Response(status, [{"errorCode": code, "errorMessage": message}])

    def throttle_response(self, operation: str) -> Response:
        response = self.gateway_error(429, "APIG.0308", "The request is throttled.")
        response.headers["Retry-After"] = str(self.faults.retry_after_s)
        return response

    def server_error_response(self, operation: str) -> Response:
        return self.service_error(500, "SVCSTG.SWR.5000001", "Internal error, please try again later.")

    # ---- auth
    def _authenticate(self, request: Request) -> Optional[Response]:
        token = request.header("x-auth-token")
        if token is not None:
            if token not in self.tokens:
                return self.gateway_error(401, "APIG.0301", "Incorrect IAM authentication information: decrypt token fail")
            expiry = self.tokens[token]
            if expiry is not None and expiry <= self.now():
                return self.gateway_error(401, "APIG.0307", "The token must be updated.")
            return None
        authorization = request.header("authorization")
        if authorization is None:
            return self.gateway_error(401, "APIG.0301", "Incorrect IAM authentication information: no credentials")
        match = _AUTHORIZATION.match(authorization)
        if not match:
            return self.gateway_error(
                401, "APIG.0301", "Incorrect IAM authentication information: unsupported Authorization header"
            )
        access_key, signed_headers, signature = match.groups()
        secret_key = self.credentials.get(access_key)
        if secret_key is None:
            return self.gateway_error(
                401, "APIG.0301", "Incorrect IAM authentication information: the access key does not exist"
            )
        signed = signed_headers.split(";")
        if "host" not in signed or "x-sdk-date" not in signed or any(h not in request.headers for h in signed):
            return self.gateway_error(
                401, "APIG.0303", "Incorrect app authentication information: host and x-sdk-date must be signed"
            )
        try:
            sent_at = datetime.strptime(request.headers["x-sdk-date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
        except ValueError:
            return self.gateway_error(401, "APIG.0303", "Incorrect app authentication information: bad X-Sdk-Date")
        if abs(self.now() - sent_at) > SKEW:
            return self.gateway_error(
                401,
                "APIG.0303",
                "Incorrect app authentication information: the request time differs from the server time"
                " by more than 15 minutes",
            )
        expected = hmac.new(
            secret_key.encode(), self._string_to_sign(request, signed).encode(), hashlib.sha256
        ).hexdigest()
        if not hmac.compare_digest(expected, signature.lower()):
            return self.gateway_error(
                401, "APIG.0303", "Incorrect app authentication information: verify aksk signature fail"
            )
        return None

    @staticmethod
    def _string_to_sign(request: Request, signed: List[str]) -> str:
        """The gateway's side of SDK-HMAC-SHA256, rebuilt from the request as it arrived."""
        uri = "/".join(quote(part, safe="~") for part in unquote(request.path).split("/"))
        if not uri.endswith("/"):
            uri += "/"
        pairs = sorted(parse_qsl(request.raw_query, keep_blank_values=True))
        query = "&".join(f"{quote(k, safe='~')}={quote(v, safe='~')}" for k, v in pairs)
        headers = "".join(f"{name}:{request.headers[name].strip()}\n" for name in signed)
        body_hash = hashlib.sha256(request.body).hexdigest() if request.body else _EMPTY_SHA256
        canonical = "\n".join([request.method, uri, query, headers, ";".join(signed), body_hash])
        digest = hashlib.sha256(canonical.encode()).hexdigest()
        return f"SDK-HMAC-SHA256\n{request.headers['x-sdk-date']}\n{digest}"

    # ---- paging
    def _page(self, request: Request, records: List[Any], render: Optional[Callable[[Any], Any]] = None) -> Response:
        """The page `offset`/`limit` ask for; with `render`, `records` are keys and only the
        page's keys are rendered (rendering every record for each page made listing a large
        namespace quadratic)."""
        total = len(records)
        offset_text, limit_text = request.param("offset"), request.param("limit")
        try:
            offset = int(offset_text) if offset_text not in (None, "") else None
            limit = int(limit_text) if limit_text not in (None, "") else None
        except ValueError:
            return self.service_error(400, "SVCSTG.SWR.4000001", "offset and limit must be integers")
        if limit is not None and not 0 < limit <= MAX_LIMIT:
            return self.service_error(400, "SVCSTG.SWR.4000001", f"limit must be between 1 and {MAX_LIMIT}")
        if offset is None:  # SWR: without an offset, every record in one answer
            page, offset = records, 0
        else:
            if offset < 0:
                return self.service_error(400, "SVCSTG.SWR.4000001", "offset must not be negative")
            page = records[offset : offset + limit] if limit else records[offset:]
        if render is not None:
            page = [render(record) for record in page]
        return Response(200, page, {"Content-Range": f"{offset}-{len(page)}/{total}"})

    # ---- namespaces and repositories
    def _namespaces(self, request: Request) -> Response:
        wanted = request.param("namespace")
        with self._state_lock:
            items = [
                {"id": self._id(("ns", name)), "name": name, "creator_name": "demo-user", "auth": 7}
                for name in sorted(self.inventory.registries)
                if not wanted or wanted == name
            ]
        return Response(200, {"namespaces": items})

    def _repositories(self, request: Request) -> Response:
        namespace, name = request.param("namespace"), request.param("name")
        with self._state_lock:
            repos = [
                repo
                for repo in sorted(self.inventory.repositories(), key=lambda r: (r.registry, r.name))
                if (not namespace or repo.registry == namespace) and (not name or name in repo.name)
            ]

        def record_of(repo: Repository) -> Dict[str, Any]:
            with self._state_lock:
                record = self._repository_record(repo)
            record["total_range"] = len(repos)
            return record

        column = request.param("order_column")
        if column in ("updated_at", "created_at", "name"):
            records = [record_of(repo) for repo in repos]
            records.sort(key=lambda r: (r[column], r["name"]), reverse=request.param("order_type") == "desc")
            return self._page(request, records)
        return self._page(request, repos, record_of)

    def _repository_record(self, repo: Repository) -> Dict[str, Any]:
        tagged = {digest for digest in repo.tags.values()}
        path = f"{self.host}/{repo.registry}/{repo.name}"
        return {
            "name": repo.name,
            "category": "linux",
            "description": repo.description,
            "size": sum(repo.images[digest].content_size for digest in tagged),
            "is_public": False,
            "num_images": len(repo.tags),
            "num_download": repo.pull_count,
            "created_at": rfc3339(repo.created_ns),
            "updated_at": rfc3339(self._stamp(repo)),
            "logo": "",
            "url": "",
            "path": path,
            "internal_path": f"10.125.0.198:20202/{repo.registry}/{repo.name}",
            "domain_name": "demo-domain",
            "namespace": repo.registry,
            "tags": sorted(repo.tags),
            "status": False,
            "total_range": 0,
        }

    # ---- tags
    def _tags(self, request: Request) -> Response:
        match = _TAGS_PATH.match(request.path)
        assert match
        namespace = unquote(match.group(1))
        name = unquote(match.group(2)).replace("$", "/")
        if namespace not in self.inventory.registries:
            return self.service_error(404, "SVCSTG.SWR.4040002", f"Namespace {namespace} not found")
        repo = self.inventory.registries[namespace].get(name)
        if repo is None:
            return self.service_error(404, "SVCSTG.SWR.4040003", f"Repository {name} not found")
        with self._state_lock:
            records = [self._tag_record(repo, tag) for tag in sorted(repo.tags)]
        wanted = request.param("tag")
        if wanted:
            records = [r for r in records if wanted in r["Tag"]]
        column = {"tag": "Tag", "updated_at": "updated", "created": "created"}.get(request.param("order_column") or "")
        if column:
            records.sort(key=lambda r: (r[column], r["Tag"]), reverse=request.param("order_type") == "desc")
        else:  # SWR's default: newest first
            records.sort(key=lambda r: r["Tag"])
            records.sort(key=lambda r: r["updated"], reverse=True)
        return self._page(request, records)

    def _tag_record(self, repo: Repository, tag: str) -> Dict[str, Any]:
        digest = repo.tags[tag]
        image = repo.images[digest]
        config_id = image.config.digest.split(":", 1)[-1] if image.config else ""
        reference = f"{repo.registry}/{repo.name}:{tag}"
        return {
            "id": self._id(("tag", repo.registry, repo.name, tag)),
            "repo_id": self._id(("repo", repo.registry, repo.name)),
            "Tag": tag,
            "image_id": config_id,
            "manifest": image.raw.decode(),
            "digest": digest,
            "schema": 2,
            "path": f"{self.host}/{reference}",
            "internal_path": f"10.125.0.198:20202/{reference}",
            "size": image.content_size,
            "is_trusted": False,
            "created": rfc3339(image.created_ns),
            "updated": rfc3339(self._tag_time(repo, tag)),
            "deleted": None,
            "scanned": False,
            "tag_type": 1 if image.is_index else 0,
        }

    # ---- change stamps (callers hold _state_lock)
    def _id(self, key: Any) -> int:
        if key not in self._ids:
            self._ids[key] = next(self._next_id)
        return self._ids[key]

    def _stamp(self, repo: Repository) -> int:
        fingerprint = hashlib.sha256(
            repr((sorted(repo.tags.items()), sorted(repo.images))).encode()
        ).hexdigest()
        key = (repo.registry, repo.name)
        previous = self._repo_stamps.get(key)
        if previous is None:
            stamp = repo.updated_ns
        elif previous[0] != fingerprint:
            stamp = max(previous[1], repo.updated_ns) + 10**9
        else:
            stamp = previous[1]
        self._repo_stamps[key] = (fingerprint, stamp)
        return stamp

    def _tag_time(self, repo: Repository, tag: str) -> int:
        digest = repo.tags[tag]
        key = (repo.registry, repo.name, tag)
        previous = self._tag_times.get(key)
        if previous is None:
            when = repo.images[digest].created_ns
        elif previous[0] != digest:
            when = self._stamp(repo)
        else:
            when = previous[1]
        self._tag_times[key] = (digest, when)
        return when
