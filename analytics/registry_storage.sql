-- registry_storage: how much does each registry store, and how much does layer sharing save?
-- One row per registry:
--   total_bytes                  every layer counted once per manifest using it (no dedup)
--   repository_unique_bytes      sum of the repositories' unique_bytes (dedup inside each repository,
--                                which is how ECR and most cloud registries store and bill)
--   unique_bytes                 distinct blobs across the whole registry: a base layer shared by
--                                many repositories counted once (a registry with one blob store)
--   saved_bytes = total_bytes - unique_bytes; dedup_ratio = total_bytes / unique_bytes
WITH per_repository AS (
    SELECT provider, registry,
           COUNT(*) AS repository_count,
           CAST(SUM(image_count) AS BIGINT) AS image_count,
           CAST(SUM(manifest_count) AS BIGINT) AS manifest_count,
           CAST(SUM(untagged_count) AS BIGINT) AS untagged_count,
           CAST(SUM(tag_count) AS BIGINT) AS tag_count,
           CAST(SUM(reported_bytes) AS BIGINT) AS reported_bytes,
           CAST(SUM(total_bytes) AS BIGINT) AS total_bytes,
           CAST(SUM(unique_bytes) AS BIGINT) AS repository_unique_bytes,
           MAX(last_pushed_at) AS last_pushed_at
    FROM {repository_storage}
    GROUP BY provider, registry
),
distinct_blobs AS (
    SELECT provider, registry, blob_digest, MAX(size_bytes) AS size_bytes
    FROM {image_blobs}
    GROUP BY provider, registry, blob_digest
),
per_blob AS (
    SELECT provider, registry, COUNT(*) AS blob_count, CAST(SUM(size_bytes) AS BIGINT) AS blob_bytes
    FROM distinct_blobs
    GROUP BY provider, registry
),
opaque AS (
    SELECT provider, registry, CAST(SUM(stored_bytes) AS BIGINT) AS opaque_bytes
    FROM {image_sizes}
    WHERE NOT blobs_known
    GROUP BY provider, registry
),
totals AS (
    SELECT r.*,
           COALESCE(b.blob_count, 0) AS blob_count,
           COALESCE(b.blob_bytes, 0) + COALESCE(o.opaque_bytes, 0) AS unique_bytes
    FROM per_repository AS r
    LEFT JOIN per_blob AS b ON b.provider = r.provider AND b.registry = r.registry
    LEFT JOIN opaque AS o ON o.provider = r.provider AND o.registry = r.registry
)
SELECT
    provider,
    registry,
    repository_count,
    image_count,
    manifest_count,
    untagged_count,
    tag_count,
    blob_count,
    reported_bytes,
    total_bytes,
    repository_unique_bytes,
    unique_bytes,
    total_bytes - unique_bytes AS saved_bytes,
    CAST(total_bytes AS DOUBLE PRECISION) / NULLIF(unique_bytes, 0) AS dedup_ratio,
    last_pushed_at
FROM totals
