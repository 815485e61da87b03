-- repository_storage: how much does each repository store, and how much does layer sharing save?
-- One row per repository (from `repositories`, plus any repository that only `images` knows):
--   image_count      top-level images (a multi-arch index counts once); manifest_count all manifests
--   total_bytes      sum of every manifest's stored bytes: each layer counted once per manifest using it
--   unique_bytes     bytes of the distinct blobs (config + layers) of the repository: a layer shared
--                    by several images counted once (plus, for images whose blobs are unknown, their
--                    reported size) - what a registry that dedups per repository actually stores
--   saved_bytes      total_bytes - unique_bytes; dedup_ratio = total_bytes / unique_bytes (>= 1)
--   reported_bytes   sum of the sizes the registry reports for the top-level images;
--   repository_size_bytes  the repository's own size when the registry reports one
WITH known_repositories AS (
    SELECT provider, registry, repository FROM {repositories} AS r
    UNION
    SELECT provider, registry, repository FROM {images} AS i
),
per_image AS (
    SELECT provider, registry, repository,
           COUNT(*) AS manifest_count,
           COUNT(*) FILTER (WHERE NOT is_child) AS image_count,
           COUNT(*) FILTER (WHERE is_index) AS index_count,
           COUNT(*) FILTER (WHERE NOT is_child AND tag_count = 0) AS untagged_count,
           CAST(SUM(tag_count) AS BIGINT) AS tag_count,
           CAST(SUM(size_bytes) FILTER (WHERE NOT is_child) AS BIGINT) AS reported_bytes,
           CAST(SUM(stored_bytes) AS BIGINT) AS total_bytes,
           CAST(SUM(stored_bytes) FILTER (WHERE NOT blobs_known) AS BIGINT) AS opaque_bytes,
           MAX(created_at) AS last_pushed_at,
           MAX(last_pulled_at) AS last_pulled_at
    FROM {image_sizes}
    GROUP BY provider, registry, repository
),
distinct_blobs AS (
    SELECT provider, registry, repository, blob_digest, MAX(size_bytes) AS size_bytes
    FROM {image_blobs}
    GROUP BY provider, registry, repository, blob_digest
),
per_blob AS (
    SELECT provider, registry, repository,
           COUNT(*) AS blob_count,
           CAST(SUM(size_bytes) AS BIGINT) AS blob_bytes
    FROM distinct_blobs
    GROUP BY provider, registry, repository
),
totals AS (
    SELECT
        k.provider,
        k.registry,
        k.repository,
        COALESCE(p.image_count, 0) AS image_count,
        COALESCE(p.manifest_count, 0) AS manifest_count,
        COALESCE(p.index_count, 0) AS index_count,
        COALESCE(p.untagged_count, 0) AS untagged_count,
        COALESCE(p.tag_count, 0) AS tag_count,
        COALESCE(b.blob_count, 0) AS blob_count,
        COALESCE(p.reported_bytes, 0) AS reported_bytes,
        COALESCE(p.total_bytes, 0) AS total_bytes,
        COALESCE(b.blob_bytes, 0) + COALESCE(p.opaque_bytes, 0) AS unique_bytes,
        p.last_pushed_at,
        p.last_pulled_at
    FROM known_repositories AS k
    LEFT JOIN per_image AS p
      ON p.provider = k.provider AND p.registry = k.registry AND p.repository = k.repository
    LEFT JOIN per_blob AS b
      ON b.provider = k.provider AND b.registry = k.registry AND b.repository = k.repository
)
SELECT
    t.provider,
    t.registry,
    t.repository,
    t.image_count,
    t.manifest_count,
    t.index_count,
    t.untagged_count,
    t.tag_count,
    t.blob_count,
    t.reported_bytes,
    t.total_bytes,
    t.unique_bytes,
    t.total_bytes - t.unique_bytes AS saved_bytes,
    CAST(t.total_bytes AS DOUBLE PRECISION) / NULLIF(t.unique_bytes, 0) AS dedup_ratio,
    r.size_bytes AS repository_size_bytes,
    t.last_pushed_at,
    t.last_pulled_at,
    t.registry || '/' || t.repository AS reference
FROM totals AS t
LEFT JOIN {repositories} AS r
  ON r.provider = t.provider AND r.registry = t.registry AND r.repository = t.repository
