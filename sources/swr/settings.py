"""Constants of the Huawei Cloud SWR source (shared/reference/registry-apis.md section 3)."""

PROVIDER = "swr"

# The API endpoint of a region and the host `docker pull` uses for it.
API_URL_TEMPLATE = "https://swr-api.{region}.myhuaweicloud.com"
REGISTRY_HOST_TEMPLATE = "swr.{region}.myhuaweicloud.com"

NAMESPACES_PATH = "/v2/manage/namespaces"
REPOSITORIES_PATH = "/v2/manage/repos"
TAGS_PATH = "/v2/manage/namespaces/{namespace}/repos/{repository}/tags"

# SWR refuses a larger `limit`; omitting `offset` would return everything in one answer,
# which is exactly what paging is there to avoid.
PAGE_LIMIT = 1000

# Call names used in counters, errors and load_problems.
CALL_NAMESPACES = "list_namespaces"
CALL_REPOSITORIES = "list_repositories"
CALL_TAGS = "list_tags"

# AK/SK signing (huaweicloudsdkcore/signer/signer.py).
SIGNING_ALGORITHM = "SDK-HMAC-SHA256"
SDK_DATE_HEADER = "X-Sdk-Date"
SDK_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
PROJECT_HEADER = "X-Project-Id"
TOKEN_HEADER = "X-Auth-Token"
EMPTY_BODY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

DEFAULT_CONCURRENCY = 4

# Rows gathered (over repositories) before they are handed to dlt as arrow tables.
EMIT_ROWS = 50_000

# Worker processes (the `processes` setting): used when a page of the listing has at least this
# many repositories whose tags must be read (below it, starting processes costs more than it
# saves); each task sent to a worker is this many repositories. Mapping tag records (manifests
# included) to rows costs more CPU than the calls, and one process maps on one core.
PROCESS_MIN_REPOSITORIES = 64
REPOSITORIES_PER_TASK = 8
MAX_AUTO_PROCESSES = 4
