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
DEFAULT_CONCURRENCY = 8

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
