"""Naver Cloud (NCP) Container Registry API constants (shared/reference/registry-apis.md §2)."""

PROVIDER = "ncp"

DEFAULT_BASE_URL = "https://ncr.apigw.ntruss.com"

# the API gateway path of each region
REGION_PREFIXES = {
    "kr": "/ncr/api/v2",
    "sgn": "/ncr/sgn-api/v2",
    "jpn": "/ncr/jpn-api/v2",
}

# the region code in a registry's pull endpoint: <registry>.<code>.ncr.ntruss.com
REGION_ENDPOINT_CODES = {"kr": "kr", "sgn": "sg", "jpn": "jp"}
ENDPOINT_TEMPLATE = "{registry}.{code}.ncr.ntruss.com"

# results per page we ask for; the API's own cap is not documented, 100 is what its console uses
DEFAULT_PAGE_SIZE = 100
# calls in flight over all worker processes: a full load makes two ListTags a repository (pages
# of 100), so at 20 ms of latency 8 left the workers waiting (200,000 images: 32.2 s, 23.9 s
# without latency); 16 hid it (23.7 s, benchmarks/README.md, stop 18). 429 "quota exceeded" is
# retried after its Retry-After all the same; lower it if `retries` grows
DEFAULT_CONCURRENCY = 16

# rows gathered (over repositories) before they are handed to dlt as arrow tables
EMIT_ROWS = 50_000
# worker processes (the `processes` setting): used when a registry has at least this many
# repositories to read (below it, starting processes costs more than it saves); each task sent
# to a worker is this many repositories. Mapping tags to rows costs as much CPU as the calls,
# and one process maps on one core.
PROCESS_MIN_REPOSITORIES = 64
REPOSITORIES_PER_TASK = 8
MAX_AUTO_PROCESSES = 4

# signature v2 headers
HEADER_TIMESTAMP = "x-ncp-apigw-timestamp"
HEADER_ACCESS_KEY = "x-ncp-iam-access-key"
HEADER_SIGNATURE = "x-ncp-apigw-signature-v2"
# the gateway refuses a timestamp further than this from its clock
MAX_CLOCK_SKEW_MS = 5 * 60 * 1000

# call names, as counted and as named in errors
LIST_REGISTRIES = "ListRegistries"
LIST_IMAGES = "ListImages"
LIST_TAGS = "ListTags"

# API gateway error codes (body {"error": {"errorCode", "message", "details"}})
GATEWAY_ERRORS = {
    "200": "authentication failed",
    "210": "permission denied",
    "230": "forbidden",
    "300": "not found",
    "400": "quota exceeded",
}

AUTH_HINT = (
    "Check [sources.ncp] access_key and secret_key (SOURCES__NCP__ACCESS_KEY / SOURCES__NCP__SECRET_KEY), "
    "that the key's sub-account may read Container Registry, and that this machine's clock is within "
    "5 minutes of the real time (the signature carries a timestamp)."
)
NOT_FOUND_HINT = "Check [sources.ncp] registries and region: the registry says this does not exist."
