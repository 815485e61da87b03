"""Constants of the OCI Distribution API source (shared/reference/registry-apis.md §5)."""

from ..manifests import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    DOCKER_MANIFEST_V1,
    DOCKER_MANIFEST_V1_SIGNED,
    OCI_INDEX,
    OCI_MANIFEST,
)

PROVIDER = "oci"

# One Accept for every manifest request. Without a type in Accept the CNCF registry answers 404
# for an OCI manifest or index, and turns a Docker manifest list into its amd64 child.
# Docker schema 1 comes last, at a lower weight: only a registry holding nothing newer sends it,
# and a tag that answered 404 for want of it would look deleted.
MANIFEST_ACCEPT = ", ".join(
    (OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST)
    + tuple(f"{media_type};q=0.5" for media_type in (DOCKER_MANIFEST_V1_SIGNED, DOCKER_MANIFEST_V1))
)

# Image config blobs: the only blobs read, for `created` and the platform.
CONFIG_MEDIA_TYPES = (
    "application/vnd.docker.container.image.v1+json",
    "application/vnd.oci.image.config.v1+json",
)
MAX_CONFIG_BYTES = 4 * 1024 * 1024  # an image config is a few KB; never download a huge "config"

CREATED_ANNOTATION = "org.opencontainers.image.created"

# /v2/_catalog page size: the CNCF registry refuses n > 1000; 100 is the registries' usual default.
DEFAULT_CATALOG_PAGE_SIZE = 100
DEFAULT_CONCURRENCY = 8

# A token without `expires_in` lives 60 s (distribution token spec); refresh a little early.
DEFAULT_TOKEN_LIFETIME_S = 60
TOKEN_EXPIRY_MARGIN_S = 5

RATELIMIT_HEADERS = ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset", "docker-ratelimit-source")

# rows collected before they are handed to dlt as arrow tables (dlt's cost is per item)
ROWS_PER_BATCH = 20_000
