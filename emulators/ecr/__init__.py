"""An AWS ECR emulator: the JSON 1.1 protocol on `POST /`, so boto3 with `endpoint_url` talks
to it unchanged.

Operations: DescribeRepositories, ListImages, DescribeImages, BatchGetImage, with real paging
(`nextToken`, `maxResults` caps of 1000 and 100 ids), the tag/image-status filters, untagged
images without `imageTags` (index children are listed untagged, as ECR does), digests = sha256
of the manifest bytes, sizes = config + layers (an index: its largest child), epoch-second
times, AWS error bodies, SigV4 signatures verified with botocore's own signer, and the region
read from the signature's credential scope (one emulator serves several regions).

Faults (see `emulators.base.Faults`): throttling answers `ThrottlingException`, errors answer
503 `ServiceUnavailableException`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
from typing import Any, Dict, List, Optional, Tuple

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from ..base import Emulator, Faults, Request, Response
from ..inventory import Image, Inventory, Repository

log = logging.getLogger("registry_etl.emulators.ecr")

TARGET_PREFIX = "AmazonEC2ContainerRegistry_V20150921."
DEFAULT_ACCOUNT = "123456789012"
DEMO_ACCESS_KEY = "AKIAEMULATOR00000001"
DEMO_SECRET_KEY = "emulator-secret-key-0000000000000000000000"
OPERATIONS = ("DescribeRepositories", "ListImages", "DescribeImages", "BatchGetImage")
_AUTH_RE = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request,"
    r"\s*SignedHeaders=(?P<headers>[^,]+),\s*Signature=(?P<signature>[0-9a-f]+)"
)


class AwsError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _seconds(epoch_ns: Optional[int]) -> Optional[float]:
    """ECR sends epoch seconds; we keep millisecond precision."""
    return None if epoch_ns is None else (epoch_ns // 1_000_000) / 1000.0


class EcrEmulator(Emulator):
    """Serves an `Inventory` whose registries are AWS regions, all in one account."""

    name = "ecr"

    def __init__(
        self,
        inventory: Inventory,
        faults: Optional[Faults] = None,
        account: str = DEFAULT_ACCOUNT,
        credentials: Optional[Dict[str, str]] = None,
        verify_signatures: bool = True,
    ) -> None:
        super().__init__(faults)
        self.inventory = inventory
        self.account = account
        self.credentials = credentials if credentials is not None else {DEMO_ACCESS_KEY: DEMO_SECRET_KEY}
        self.verify_signatures = verify_signatures
        self.archived: set = set()  # digests whose imageStatus is ARCHIVED

    # ---- protocol
    def operation(self, request: Request) -> str:
        target = request.header("x-amz-target") or ""
        if request.method != "POST" or not target.startswith(TARGET_PREFIX):
            raise ValueError(f"{request.method} {request.path} target={target!r}")
        return target[len(TARGET_PREFIX):]

    def throttle_response(self, operation: str) -> Response:
        return self._error(AwsError(400, "ThrottlingException", "Rate exceeded"))

    def server_error_response(self, operation: str) -> Response:
        return self._error(AwsError(503, "ServiceUnavailableException", "Service is unavailable"))

    def _error(self, error: AwsError) -> Response:
        return Response(
            error.status,
            {"__type": error.code, "message": error.message},
            {"x-amzn-ErrorType": error.code, "x-amzn-RequestId": "00000000-0000-0000-0000-000000000000"},
            content_type="application/x-amz-json-1.1",
        )

    def handle(self, request: Request, operation: str) -> Response:
        try:
            region = self._authenticate(request)
            body = request.json()
            if operation not in OPERATIONS:
                raise AwsError(400, "UnknownOperationException", f"unknown operation {operation}")
            answer = getattr(self, "op_" + operation)(region, body)
        except AwsError as error:
            return self._error(error)
        except (ValueError, TypeError, KeyError) as exc:
            return self._error(AwsError(400, "SerializationException", str(exc)))
        return Response(200, answer, content_type="application/x-amz-json-1.1")

    def _authenticate(self, request: Request) -> str:
        match = _AUTH_RE.match(request.header("authorization") or "")
        if not match:
            raise AwsError(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
        region = match["region"]
        if not self.verify_signatures:
            return region
        secret = self.credentials.get(match["key"])
        if secret is None:
            raise AwsError(400, "UnrecognizedClientException", "The security token included in the request is invalid.")
        signed = match["headers"].split(";")
        headers = {name: request.header(name, "") for name in signed}
        aws_request = AWSRequest(
            method=request.method,
            url=f"http://{request.header('host')}{request.path}" + (f"?{request.raw_query}" if request.raw_query else ""),
            data=request.body,
            headers=headers,
        )
        aws_request.context["timestamp"] = request.header("x-amz-date") or ""
        signer = SigV4Auth(Credentials(match["key"], secret), match["service"], region)
        canonical = signer.canonical_request(aws_request)
        expected = signer.signature(signer.string_to_sign(aws_request, canonical), aws_request)
        if not hmac.compare_digest(expected, match["signature"]):
            raise AwsError(
                400,
                "InvalidSignatureException",
                "The request signature we calculated does not match the signature you provided. "
                "Check your AWS Secret Access Key and signing method.",
            )
        return region

    # ---- helpers
    def _registry(self, region: str, registry_id: Optional[str]) -> Dict[str, Repository]:
        if registry_id not in (None, self.account):
            raise AwsError(400, "RepositoryNotFoundException", f"The repository with name does not exist in the registry with id '{registry_id}'")
        return self.inventory.registries.get(region, {})

    def _repository(self, region: str, body: Dict[str, Any]) -> Repository:
        name = body.get("repositoryName")
        if not isinstance(name, str) or not name:
            raise AwsError(400, "InvalidParameterException", "repositoryName is required")
        repo = self._registry(region, body.get("registryId")).get(name)
        if repo is None:
            raise AwsError(
                400,
                "RepositoryNotFoundException",
                f"The repository with name '{name}' does not exist in the registry with id '{self.account}'",
            )
        return repo

    def _page(self, items: List[Any], body: Dict[str, Any], cap: int, scope: str) -> Tuple[List[Any], Optional[str]]:
        max_results = body.get("maxResults")
        if max_results is not None and not (isinstance(max_results, int) and 1 <= max_results <= cap):
            raise AwsError(400, "ValidationException", f"1 validation error detected: Value '{max_results}' at 'maxResults' failed to satisfy constraint: Member must have value less than or equal to {cap}")
        size = max_results or 100
        offset = 0
        if body.get("nextToken"):
            offset = self._read_token(body["nextToken"], scope)
        page = items[offset : offset + size]
        more = offset + size < len(items)
        return page, (self._make_token(offset + size, scope) if more else None)

    def _make_token(self, offset: int, scope: str) -> str:
        raw = json.dumps({"o": offset, "s": hashlib.sha256(scope.encode()).hexdigest()[:16]})
        return base64.urlsafe_b64encode(raw.encode()).decode()

    def _read_token(self, token: str, scope: str) -> int:
        try:
            data = json.loads(base64.urlsafe_b64decode(token.encode()))
            if data["s"] != hashlib.sha256(scope.encode()).hexdigest()[:16]:
                raise ValueError("scope")
            return int(data["o"])
        except Exception:
            raise AwsError(400, "InvalidParameterException", "Invalid parameter at 'nextToken' failed to satisfy constraint: 'Invalid NextToken'") from None

    def _status(self, image: Image) -> str:
        return "ARCHIVED" if image.digest in self.archived else "ACTIVE"

    def _status_ok(self, image: Image, wanted: Optional[str]) -> bool:
        if wanted in (None, ""):
            wanted = "ACTIVE"
        return wanted == "ANY" or self._status(image) == wanted

    def _uri(self, region: str, repo: Repository) -> str:
        return f"{self.account}.dkr.ecr.{region}.amazonaws.com/{repo.name}"

    # ---- operations
    def op_DescribeRepositories(self, region: str, body: Dict[str, Any]) -> Dict[str, Any]:
        registry = self._registry(region, body.get("registryId"))
        names = body.get("repositoryNames")
        if names:
            missing = [n for n in names if n not in registry]
            if missing:
                raise AwsError(400, "RepositoryNotFoundException", f"The repository with name '{missing[0]}' does not exist in the registry with id '{self.account}'")
            repos = [registry[n] for n in names]
        else:
            repos = sorted(registry.values(), key=lambda r: r.name)
        page, token = self._page(repos, body, 1000, f"repos/{region}/{names}")
        out = []
        for index, repo in enumerate(page):
            out.append(
                {
                    "repositoryArn": f"arn:aws:ecr:{region}:{self.account}:repository/{repo.name}",
                    "registryId": self.account,
                    "repositoryName": repo.name,
                    "repositoryUri": self._uri(region, repo),
                    "createdAt": _seconds(repo.created_ns),
                    "imageTagMutability": "IMMUTABLE" if len(repo.name) % 4 == 0 else "MUTABLE",
                    "imageScanningConfiguration": {"scanOnPush": len(repo.name) % 2 == 0},
                    "encryptionConfiguration": {"encryptionType": "AES256"},
                }
            )
        return {"repositories": out, **({"nextToken": token} if token else {})}

    def _listing(self, repo: Repository, filters: Dict[str, Any]) -> List[Dict[str, str]]:
        tag_status = filters.get("tagStatus") or "ANY"
        if tag_status not in ("TAGGED", "UNTAGGED", "ANY"):
            raise AwsError(400, "InvalidParameterException", f"Invalid tagStatus {tag_status!r}")
        ids: List[Dict[str, str]] = []
        for digest in sorted(repo.images):
            image = repo.images[digest]
            if not self._status_ok(image, filters.get("imageStatus")):
                continue
            tags = repo.tags_of(digest)
            if tags and tag_status in ("TAGGED", "ANY"):
                ids.extend({"imageDigest": digest, "imageTag": tag} for tag in tags)
            elif not tags and tag_status in ("UNTAGGED", "ANY"):
                ids.append({"imageDigest": digest})
        return ids

    def op_ListImages(self, region: str, body: Dict[str, Any]) -> Dict[str, Any]:
        repo = self._repository(region, body)
        filters = body.get("filter") or {}
        ids = self._listing(repo, filters)
        page, token = self._page(ids, body, 1000, f"list/{region}/{repo.name}/{json.dumps(filters, sort_keys=True)}")
        return {"imageIds": page, **({"nextToken": token} if token else {})}

    def _find(self, repo: Repository, image_id: Dict[str, Any]) -> Optional[Image]:
        digest = image_id.get("imageDigest")
        if digest is None and image_id.get("imageTag") is not None:
            digest = repo.tags.get(image_id["imageTag"])
        image = repo.images.get(digest) if digest else None
        if image is not None and image_id.get("imageTag") and repo.tags.get(image_id["imageTag"]) != image.digest:
            return None
        return image

    def _detail(self, region: str, repo: Repository, image: Image) -> Dict[str, Any]:
        detail: Dict[str, Any] = {
            "registryId": self.account,
            "repositoryName": repo.name,
            "imageDigest": image.digest,
            "imageSizeInBytes": image.content_size,
            "imagePushedAt": _seconds(image.created_ns),
            "imageManifestMediaType": image.media_type,
            "imageStatus": self._status(image),
        }
        tags = repo.tags_of(image.digest)
        if tags:
            detail["imageTags"] = tags
        if image.config is not None:
            detail["artifactMediaType"] = image.config.media_type
        if image.last_pulled_ns is not None:
            detail["lastRecordedPullTime"] = _seconds(image.last_pulled_ns)
        if int(image.digest[-2:], 16) % 2 == 0 and not image.is_index:
            detail["imageScanStatus"] = {"status": "COMPLETE", "description": "The scan was completed successfully."}
            detail["imageScanFindingsSummary"] = {
                "imageScanCompletedAt": _seconds(image.created_ns + 60 * 10**9),
                "vulnerabilitySourceUpdatedAt": _seconds(image.created_ns),
                "findingSeverityCounts": {"HIGH": int(image.digest[-3], 16) % 3, "LOW": int(image.digest[-4], 16)},
            }
        return detail

    def op_DescribeImages(self, region: str, body: Dict[str, Any]) -> Dict[str, Any]:
        repo = self._repository(region, body)
        image_ids = body.get("imageIds")
        if image_ids:
            if len(image_ids) > 100:
                raise AwsError(400, "ValidationException", "Member must have length less than or equal to 100 (imageIds)")
            found = []
            for image_id in image_ids:
                image = self._find(repo, image_id)
                if image is None:
                    raise AwsError(400, "ImageNotFoundException", f"The image with imageId {json.dumps(image_id)} does not exist within the repository with name '{repo.name}'")
                found.append(image)
            return {"imageDetails": [self._detail(region, repo, image) for image in found]}
        filters = body.get("filter") or {}
        images = [
            repo.images[d]
            for d in sorted(repo.images)
            if self._status_ok(repo.images[d], filters.get("imageStatus"))
            and (filters.get("tagStatus") in (None, "ANY") or (filters["tagStatus"] == "TAGGED") == bool(repo.tags_of(d)))
        ]
        page, token = self._page(images, body, 1000, f"describe/{region}/{repo.name}/{json.dumps(filters, sort_keys=True)}")
        return {"imageDetails": [self._detail(region, repo, i) for i in page], **({"nextToken": token} if token else {})}

    def op_BatchGetImage(self, region: str, body: Dict[str, Any]) -> Dict[str, Any]:
        repo = self._repository(region, body)
        image_ids = body.get("imageIds") or []
        if not 1 <= len(image_ids) <= 100:
            raise AwsError(400, "ValidationException", "imageIds must hold between 1 and 100 items")
        accepted = body.get("acceptedMediaTypes")
        images, failures = [], []
        for image_id in image_ids:
            image = self._find(repo, image_id)
            if image is None:
                failures.append({"imageId": image_id, "failureCode": "ImageNotFound", "failureReason": "Requested image not found"})
            elif accepted and image.media_type not in accepted:
                failures.append({"imageId": image_id, "failureCode": "UnsupportedImageType", "failureReason": "The image's media type is not accepted"})
            else:
                images.append(
                    {
                        "registryId": self.account,
                        "repositoryName": repo.name,
                        "imageId": dict(image_id),
                        "imageManifest": image.raw.decode(),
                        "imageManifestMediaType": image.media_type,
                    }
                )
        return {"images": images, "failures": failures}


def demo_inventory(seed: int = 7) -> Inventory:
    return Inventory(seed=seed, registries=("us-east-1", "eu-west-1"), repositories=12, images=240)


def start_demo(inventory: Optional[Inventory] = None, faults: Optional[Faults] = None) -> Tuple[EcrEmulator, Dict[str, str]]:
    """Start the emulator with demo data; return it and the env vars that point the source at it."""
    emulator = EcrEmulator(inventory or demo_inventory(), faults)
    emulator.start()
    return emulator, demo_env(emulator)


def demo_env(emulator: EcrEmulator) -> Dict[str, str]:
    return {
        "SOURCES__ECR__ENDPOINT_URL": emulator.url,
        "SOURCES__ECR__REGIONS": json.dumps(list(emulator.inventory.registries)),
        "AWS_ACCESS_KEY_ID": next(iter(emulator.credentials)),
        "AWS_SECRET_ACCESS_KEY": next(iter(emulator.credentials.values())),
        "AWS_DEFAULT_REGION": next(iter(emulator.inventory.registries)),
    }
