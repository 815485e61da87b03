"""AWS ECR calls (boto3) and the mapping of their answers to unified rows."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Set, Tuple

import boto3
import botocore.exceptions
import botocore.session
from botocore.config import Config
from botocore.utils import parse_timestamp

from ..concurrency import map_bounded
from ..errors import ApiError, AuthError, BadResponseError, ConfigError, NotFoundError, RegistryError, register_secret
from ..manifests import ManifestError, parse_manifest
from ..model import REPOSITORIES, TAGS, Rows, scope_marker, tag_row
from ..values import BadValue, to_int, to_time, snake_case
from .parser import CompiledParserFactory
from .settings import (
    ACCEPTED_MEDIA_TYPES,
    AUTH_CODES,
    MAX_IMAGE_IDS,
    MAX_RESULTS,
    NOT_FOUND_CODES,
    PROVIDER,
)

log = logging.getLogger("registry_etl.ecr")


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def utc_timestamp(value: Any) -> datetime:
    """botocore's timestamp parser, answering UTC: ECR sends epoch seconds, and botocore's
    default converts each through dateutil's local time zone, which took two thirds of the time
    spent parsing a DescribeImages page."""
    try:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, timezone.utc)
        return parse_timestamp(value)
    except (ValueError, TypeError, OverflowError, OSError):
        # botocore would fail the whole call (100 images) for one odd time: pass it on, and
        # `to_time` reports that one value as a load problem while the rest of the answer loads
        return value


def botocore_session() -> botocore.session.Session:
    """A botocore session whose clients parse answers with `CompiledJSONParser` and
    timestamps with `utc_timestamp` (same results as botocore's, a fraction of the CPU)."""
    session = botocore.session.get_session()
    factory = CompiledParserFactory()
    factory.set_parser_defaults(timestamp_parser=utc_timestamp)
    session.register_component("response_parser_factory", factory)
    return session


class EcrApi:
    """One region (and optionally one registry id) of ECR, with errors turned into ours."""

    def __init__(
        self,
        region: str,
        registry_id: Optional[str] = None,
        endpoint_url: Optional[str] = None,
        retry_mode: str = "standard",
        max_attempts: int = 10,
        max_connections: int = 10,
        counter: Optional[Counter] = None,
    ) -> None:
        self.region = region
        self.registry_id = registry_id
        self.label = f"{region}" + (f"/{registry_id}" if registry_id else "")
        self.counter = counter if counter is not None else Counter()
        self._lock = threading.Lock()
        session = boto3.session.Session(botocore_session=botocore_session())
        credentials = session.get_credentials()
        if credentials is not None:
            frozen = credentials.get_frozen_credentials()
            register_secret(frozen.secret_key)
            register_secret(frozen.token)
        self.client = session.client(
            "ecr",
            region_name=region,
            endpoint_url=endpoint_url or None,
            config=Config(
                retries={"mode": retry_mode, "max_attempts": max_attempts},
                # botocore checks every parameter against the service model before each call:
                # a sixth of a call's CPU for the 100 digests of a DescribeImages. The values
                # come from ECR's own answers (and names from the config, which ECR itself
                # checks: InvalidParameterException is a ConfigError all the same)
                parameter_validation=False,
                max_pool_connections=max_connections,
                user_agent_extra="registry-etl",
            ),
        )
        self.client.meta.events.register("before-send.ecr.*", self._count)
        # botocore turns urllib3's length check off and parses half a JSON answer as an empty
        # one (a listing without its items): refuse short bodies so they are retried instead
        endpoint = self.client._endpoint  # no public hook sees the raw response before parsing
        endpoint.http_session = LengthCheckingSession(endpoint.http_session)

    def _count(self, request: Any, **kwargs: Any) -> None:
        operation = (request.headers.get("X-Amz-Target") or b"")
        if isinstance(operation, bytes):
            operation = operation.decode()
        with self._lock:
            self.counter[operation.rsplit(".", 1)[-1]] += 1

    def _registry_kwargs(self) -> Dict[str, str]:
        return {"registryId": self.registry_id} if self.registry_id else {}

    def _fail(self, call: str, exc: Exception, repository: Optional[str] = None) -> RegistryError:
        where = self.label + (f" repository {repository}" if repository else "")
        if isinstance(exc, botocore.exceptions.ClientError):
            error = exc.response.get("Error", {})
            code, message = error.get("Code", "?"), error.get("Message", str(exc))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            detail = f"{code}: {message}"
            if code in AUTH_CODES:
                return AuthError(PROVIDER, call, detail, registry=where, status=status,
                                 hint="Check the AWS credentials (profile, env, role) and that they allow "
                                      "ecr:DescribeRepositories, ecr:ListImages, ecr:DescribeImages, ecr:BatchGetImage.")
            if code in NOT_FOUND_CODES:
                return NotFoundError(PROVIDER, call, detail, registry=where, status=status,
                                     hint="Check [sources.ecr] repositories, registry_ids and regions.")
            if code in ("ValidationException", "InvalidParameterException"):
                return ConfigError(PROVIDER, call, detail, registry=where, status=status)
            return ApiError(PROVIDER, call, detail, registry=where, status=status)
        if isinstance(exc, botocore.exceptions.NoCredentialsError):
            return AuthError(PROVIDER, call, "no AWS credentials found", registry=where,
                             hint="Configure boto3's credential chain: AWS_PROFILE, AWS_ACCESS_KEY_ID/"
                                  "AWS_SECRET_ACCESS_KEY, SSO or an instance role.")
        if isinstance(exc, botocore.exceptions.PaginationError):
            # botocore's paginator stops on a next token it has seen before
            return BadResponseError(PROVIDER, call, f"{exc} (paging would never end)", registry=where)
        if isinstance(exc, botocore.exceptions.ParamValidationError):
            return ConfigError(PROVIDER, call, str(exc), registry=where)
        if isinstance(exc, (botocore.exceptions.BotoCoreError, OSError)):
            return ApiError(PROVIDER, call, f"{type(exc).__name__}: {exc}", registry=where)
        return BadResponseError(PROVIDER, call, f"{type(exc).__name__}: {exc}", registry=where)

    def _pages(self, call: str, operation: str, key: str, repository: Optional[str] = None, **params: Any) -> Iterator[List[Dict[str, Any]]]:
        paginator = self.client.get_paginator(operation)
        try:
            for page in paginator.paginate(**params, PaginationConfig={"PageSize": MAX_RESULTS}):
                items = page.get(key)
                if not isinstance(items, list):
                    raise BadResponseError(PROVIDER, call, f"the answer has no list {key!r}", registry=self.label)
                yield items
        except RegistryError:
            raise
        except Exception as exc:
            raise self._fail(call, exc, repository) from None

    def list_repositories(self, names: Optional[Sequence[str]] = None) -> Iterator[List[Dict[str, Any]]]:
        params: Dict[str, Any] = self._registry_kwargs()
        if names:
            params["repositoryNames"] = list(names)
        yield from self._pages("DescribeRepositories", "describe_repositories", "repositories", **params)

    def list_images(self, repository: str, tag_status: str, image_status: str) -> Iterator[List[Dict[str, Any]]]:
        yield from self._pages(
            "ListImages",
            "list_images",
            "imageIds",
            repository,
            repositoryName=repository,
            filter={"tagStatus": tag_status, "imageStatus": image_status},
            **self._registry_kwargs(),
        )

    def describe_images(self, repository: str, digests: Sequence[str]) -> List[Dict[str, Any]]:
        try:
            answer = self.client.describe_images(
                repositoryName=repository,
                imageIds=[{"imageDigest": d} for d in digests],
                filter={"imageStatus": "ANY"},
                **self._registry_kwargs(),
            )
        except Exception as exc:
            raise self._fail("DescribeImages", exc, repository) from None
        return list(answer.get("imageDetails") or [])

    def batch_get_images(self, repository: str, digests: Sequence[str]) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]]]:
        try:
            answer = self.client.batch_get_image(
                repositoryName=repository,
                imageIds=[{"imageDigest": d} for d in digests],
                acceptedMediaTypes=ACCEPTED_MEDIA_TYPES,
                **self._registry_kwargs(),
            )
        except Exception as exc:
            raise self._fail("BatchGetImage", exc, repository) from None
        return list(answer.get("images") or []), list(answer.get("failures") or [])


class LengthCheckingSession:
    """Wraps botocore's HTTP session: a body shorter than its Content-Length is a dropped
    connection (retried by botocore like one), not an answer."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def send(self, request: Any) -> Any:
        response = self._inner.send(request)
        expected = response.headers.get("content-length")
        if expected and expected.isdigit() and not request.stream_output:
            received = len(response.content)
            if received < int(expected):
                log.debug("ECR answer cut short: %d of %s bytes from %s", received, expected, request.url)
                raise botocore.exceptions.ConnectionClosedError(endpoint_url=request.url)
        return response

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def registry_of(repository: Dict[str, Any], region: str) -> str:
    """The pullable registry host: `<account>.dkr.ecr.<region>.amazonaws.com`."""
    uri = repository.get("repositoryUri")
    if isinstance(uri, str) and "/" in uri:
        return uri.split("/", 1)[0]
    return f"{repository.get('registryId')}.dkr.ecr.{region}.amazonaws.com"


def repository_row(repo: Dict[str, Any], region: str, image_count: Optional[int], rows: Optional[Rows] = None) -> Dict[str, Any]:
    scanning = repo.get("imageScanningConfiguration") or {}
    encryption = repo.get("encryptionConfiguration") or {}
    known = {
        "repositoryArn", "registryId", "repositoryName", "repositoryUri", "createdAt",
        "imageTagMutability", "imageScanningConfiguration", "encryptionConfiguration",
    }
    row = {
        "provider": PROVIDER,
        "registry": registry_of(repo, region),
        "repository": repo["repositoryName"],
        "created_at": _repository_time(repo, region, rows),
        "image_count": image_count,
        "region": region,
        "registry_id": repo.get("registryId"),
        "repository_arn": repo.get("repositoryArn"),
        "repository_uri": repo.get("repositoryUri"),
        "image_tag_mutability": repo.get("imageTagMutability"),
        "scan_on_push": scanning.get("scanOnPush"),
        "encryption_type": encryption.get("encryptionType"),
        "kms_key": encryption.get("kmsKey"),
    }
    # fields this code does not know yet are kept under their API names (schema drift)
    row.update({snake_case(k): v for k, v in repo.items() if k not in known})
    return row


def _repository_time(repo: Dict[str, Any], region: str, rows: Optional[Rows]) -> Any:
    try:
        return to_time(repo.get("createdAt"))
    except BadValue as exc:
        if rows is not None:
            rows.problem(PROVIDER, registry_of(repo, region), repo.get("repositoryName"), "DescribeRepositories",
                         repo.get("repositoryName"), f"createdAt: {exc}")
        return None


def image_row(detail: Dict[str, Any], registry: str, rows: Rows) -> Dict[str, Any]:
    """An `images` row from a DescribeImages detail; unsound values are reported, not fatal."""
    repository = detail.get("repositoryName")
    digest = detail.get("imageDigest")

    def convert(field: str, convert_fn: Callable[[Any], Any]) -> Any:
        try:
            return convert_fn(detail.get(field))
        except BadValue as exc:
            rows.problem(PROVIDER, registry, repository, "DescribeImages", digest, f"{field}: {exc}")
            return None

    known = {
        "registryId", "repositoryName", "imageDigest", "imageTags", "imageSizeInBytes", "imagePushedAt",
        "imageManifestMediaType", "artifactMediaType", "lastRecordedPullTime", "imageStatus",
        "imageScanStatus", "imageScanFindingsSummary",
    }
    row = {
        "provider": PROVIDER,
        "registry": registry,
        "repository": repository,
        "digest": digest,
        "media_type": detail.get("imageManifestMediaType"),
        "artifact_media_type": detail.get("artifactMediaType"),
        "size_bytes": convert("imageSizeInBytes", to_int),
        "created_at": convert("imagePushedAt", to_time),
        "last_pulled_at": convert("lastRecordedPullTime", to_time),
        "status": detail.get("imageStatus"),
        "registry_id": detail.get("registryId"),
        "image_scan_status": detail.get("imageScanStatus"),
        "image_scan_findings_summary": detail.get("imageScanFindingsSummary"),
    }
    row.update({snake_case(k): v for k, v in detail.items() if k not in known})
    return row




class RepositoryLoader:
    """Everything about one repository: listing, tags, and details for new digests."""

    def __init__(self, api: EcrApi, known: Callable[[str, str], set], tag_status: str, image_status: str, mark_repository: bool) -> None:
        self.api = api
        self.known = known
        self.tag_status = tag_status
        self.image_status = image_status
        self.mark_repository = mark_repository

    def load(self, repo: Dict[str, Any]) -> List[Any]:
        """All rows of one repository, as marked arrow tables ready to yield."""
        return list(self.collect(repo)[0].emit_all())

    def collect(self, repo: Dict[str, Any], previous: Optional[str] = None) -> Tuple[Rows, Optional[str]]:
        """All rows of one repository (the caller emits them, with other repositories'), and
        the fingerprint of what was read. When the fingerprint equals `previous` (the last
        loaded one) nothing changed: no rows, no detail calls."""
        name = repo.get("repositoryName")
        registry = registry_of(repo, self.api.region)
        rows = Rows()
        if not isinstance(name, str) or not name:
            shown = {k: v for k, v in repo.items() if not k.startswith("_")}
            rows.problem(PROVIDER, registry, None, "DescribeRepositories", str(shown)[:300],
                         "repository without repositoryName: skipped")
            return rows, None
        digests: Dict[str, None] = {}
        tags: List[Tuple[str, str]] = []
        for page in self.api.list_images(name, self.tag_status, self.image_status):
            for image_id in page:
                digest = image_id.get("imageDigest")
                if not isinstance(digest, str) or not digest:
                    rows.problem(PROVIDER, registry, name, "ListImages", str(image_id), "entry without imageDigest")
                    continue
                digests[digest] = None
                if image_id.get("imageTag"):
                    tags.append((image_id["imageTag"], digest))
        fingerprint = listing_fingerprint(repo, digests, tags)
        known = self.known(registry, name)
        # the destination must still hold every digest: a fingerprint in state says nothing
        # about a destination that was replaced or emptied since
        if fingerprint == previous and not len(rows) and known.issuperset(digests):
            return rows, fingerprint
        for tag, digest in tags:
            rows.add(TAGS, tag_row(PROVIDER, registry, name, tag, digest))
        if self.mark_repository:
            rows.add(TAGS, scope_marker(PROVIDER, registry, name))
        rows.add(REPOSITORIES, repository_row(repo, self.api.region, len(digests), rows))
        new = [d for d in digests if d not in known]
        for chunk in chunks(new, MAX_IMAGE_IDS):
            self._details(name, registry, chunk, rows)
        return rows, fingerprint

    def _details(self, name: str, registry: str, digests: Sequence[str], rows: Rows) -> None:
        details = {d.get("imageDigest"): d for d in self.api.describe_images(name, digests)}
        images, failures = self.api.batch_get_images(name, digests)
        manifests = {}
        for image in images:
            manifests[(image.get("imageId") or {}).get("imageDigest")] = image
        for failure in failures:
            digest = (failure.get("imageId") or {}).get("imageDigest")
            rows.problem(PROVIDER, registry, name, "BatchGetImage", digest,
                         f"{failure.get('failureCode')}: {failure.get('failureReason')}")
        for digest in digests:
            detail = details.get(digest)
            if detail is None:
                rows.problem(PROVIDER, registry, name, "DescribeImages", digest, "no detail returned for this digest")
                detail = {"repositoryName": name, "imageDigest": digest}
            row = image_row(detail, registry, rows)
            manifest = None
            got = manifests.get(digest)
            if got is not None:
                try:
                    manifest = parse_manifest(got.get("imageManifest") or "", got.get("imageManifestMediaType"))
                except ManifestError as exc:
                    rows.problem(PROVIDER, registry, name, "BatchGetImage", digest, str(exc))
                else:
                    for problem in manifest.problems:
                        rows.problem(PROVIDER, registry, name, "BatchGetImage", digest, problem)
            rows.add_image(row, manifest)



def listing_fingerprint(repo: Dict[str, Any], digests: Dict[str, None], tags: List[Tuple[str, str]]) -> str:
    """What a repository looked like: its DescribeRepositories record and its listing (every
    digest, every tag -> digest), order-free. ECR has no change stamp per repository; an equal
    fingerprint means the rows of the last load still hold."""
    record = {k: v for k, v in repo.items() if not k.startswith("_")}
    hasher = hashlib.blake2b(digest_size=16)
    hasher.update(_FINGERPRINT_JSON.encode(record).encode())
    hasher.update("\n".join(sorted(digests)).encode())
    hasher.update(b"\0")
    hasher.update("\n".join(sorted(f"{tag}\t{digest}" for tag, digest in tags)).encode())
    return hasher.hexdigest()


_FINGERPRINT_JSON = json.JSONEncoder(sort_keys=True, default=str)


# ---- tasks: a few repositories read together, in threads or worker processes (sources.concurrency.read_tasks)


@dataclass(frozen=True)
class ApiSpec:
    """How to build an `EcrApi` (a worker process builds its own client from it)."""

    region: str
    registry_id: Optional[str]
    endpoint_url: Optional[str]
    retry_mode: str
    max_attempts: int
    max_connections: int

    def build(self, counter: Optional[Counter] = None) -> EcrApi:
        return EcrApi(self.region, self.registry_id, self.endpoint_url, self.retry_mode, self.max_attempts,
                      self.max_connections, counter)


@dataclass
class RepositoryTask:
    """A few repositories of one API to read, with what the destination already holds."""

    api: ApiSpec
    repositories: List[Dict[str, Any]]
    known: Dict[str, Set[str]]  # repository -> digests already loaded
    previous: Dict[str, Optional[str]]  # repository -> fingerprint of the last load
    marked: Set[str]  # repositories that get a scope marker (read in full, tags retired within)
    tag_status: str
    image_status: str
    threads: int = 1


def read_repositories(task: RepositoryTask, api: EcrApi) -> Tuple[Rows, Dict[str, Optional[str]]]:
    """Read the task's repositories (up to `task.threads` at once) into one `Rows`."""
    registry_known = lambda registry, name: task.known.get(name, set())  # noqa: E731

    def read(repo: Dict[str, Any]) -> Tuple[Rows, Optional[str]]:
        name = repo.get("repositoryName")
        loader = RepositoryLoader(api, registry_known, task.tag_status, task.image_status, name in task.marked)
        return loader.collect(repo, task.previous.get(name) if isinstance(name, str) else None)

    rows, fingerprints = Rows(), {}
    for repo, (repo_rows, fingerprint) in zip(task.repositories, map_bounded(read, task.repositories, task.threads)):
        rows.merge(repo_rows)
        if isinstance(repo.get("repositoryName"), str):
            fingerprints[repo["repositoryName"]] = fingerprint
    return rows, fingerprints
