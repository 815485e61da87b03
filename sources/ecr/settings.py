"""AWS ECR API limits and defaults."""

PROVIDER = "ecr"

# ListImages / DescribeRepositories / DescribeImages accept maxResults 1..1000 (botocore's model)
MAX_RESULTS = 1000
# DescribeImages and BatchGetImage take at most 100 imageIds a call
MAX_IMAGE_IDS = 100

TAG_STATUSES = ("TAGGED", "UNTAGGED", "ANY")
IMAGE_STATUSES = ("ACTIVE", "ARCHIVED", "ACTIVATING", "ANY")

# botocore retry modes: "standard" retries throttling and 5xx with backoff, "adaptive" adds
# client-side rate limiting
DEFAULT_RETRY_MODE = "standard"
DEFAULT_MAX_ATTEMPTS = 10
# calls in flight over all worker processes: 16 overlapped 20 ms round trips ~30% better than 8
# (benchmarks/README.md) and stays far below ECR's per-region rates (BatchGetImage 2,000/s;
# 16 calls of >= 20 ms are <= 800/s); throttling is retried by botocore all the same
DEFAULT_CONCURRENCY = 16
# rows gathered across repositories before they are yielded as arrow tables (dlt's cost per
# yielded table is about a millisecond; 50,000 rows are a few tens of MB as dicts)
EMIT_ROWS = 50_000
# worker processes (the `processes` setting): used when a DescribeRepositories page holds at
# least this many repositories (below it, spawning processes costs more than it saves); each
# task sent to a worker is this many repositories
PROCESS_MIN_REPOSITORIES = 64
REPOSITORIES_PER_TASK = 8
MAX_AUTO_PROCESSES = 4

ACCEPTED_MEDIA_TYPES = [
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
]

# AWS error codes by what they mean for the user
AUTH_CODES = {
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "ExpiredTokenException",
    "MissingAuthenticationTokenException",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
}
NOT_FOUND_CODES = {"RepositoryNotFoundException", "RegistryNotFoundException", "ImageNotFoundException"}
