"""Yandex Cloud Container Registry API endpoints, limits and defaults."""

PROVIDER = "yandex"

DEFAULT_BASE_URL = "https://container-registry.api.cloud.yandex.net/container-registry/v1"
DEFAULT_IAM_URL = "https://iam.api.cloud.yandex.net/iam/v1/tokens"
IAM_TOKENS_PATH = "/iam/v1/tokens"
# the JWT audience is this fixed URL whatever endpoint the token is exchanged at
JWT_AUDIENCE = "https://iam.api.cloud.yandex.net/iam/v1/tokens"
# Yandex refuses a JWT that lives longer than an hour
JWT_LIFETIME_S = 3600

# the host `docker pull` takes: cr.yandex/<registry id>/<repository>:<tag>
PULL_HOST = "cr.yandex"

# Registry.list, Repository.list and Image.list take pageSize up to 1000 (default 100)
PAGE_SIZE = 1000

# IAM tokens live up to 12 h; Yandex advises getting a new one about every hour. A token is
# renewed after an hour or after 80% of its lifetime, whichever comes first.
TOKEN_REFRESH_AFTER_S = 3600
TOKEN_REFRESH_SHARE = 0.8

DEFAULT_CONCURRENCY = 4

# google.rpc.Code numbers Yandex answers with, by name
RPC_CODE_NAMES = {
    0: "OK",
    1: "CANCELLED",
    2: "UNKNOWN",
    3: "INVALID_ARGUMENT",
    4: "DEADLINE_EXCEEDED",
    5: "NOT_FOUND",
    6: "ALREADY_EXISTS",
    7: "PERMISSION_DENIED",
    8: "RESOURCE_EXHAUSTED",
    9: "FAILED_PRECONDITION",
    10: "ABORTED",
    11: "OUT_OF_RANGE",
    12: "UNIMPLEMENTED",
    13: "INTERNAL",
    14: "UNAVAILABLE",
    15: "DATA_LOSS",
    16: "UNAUTHENTICATED",
}
