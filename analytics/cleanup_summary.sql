-- cleanup_summary: how many bytes would each cleanup free, per repository?
-- One row per repository and reason ('untagged', 'stale', 'retention', and 'any' = all of them
-- together) that has candidates:
--   candidate_count / tagged_count   candidates, and how many of them still carry tags
--   candidate_bytes                  sum of the candidates' bytes, layers counted per image
--   reclaimable_bytes                bytes of the blobs that ONLY candidates reference in the
--                                    repository: what deleting all of them really frees (a layer
--                                    still used by a kept image frees nothing)
WITH listed AS MATERIALIZED (
    SELECT reason, provider, registry, repository, digest, is_tagged, unit_bytes, opaque_bytes, created_at
    FROM {cleanup_candidates}
),
candidate_units AS MATERIALIZED (
    SELECT DISTINCT reason, provider, registry, repository, digest, is_tagged, unit_bytes,
           opaque_bytes, created_at
    FROM listed
    UNION ALL
    SELECT DISTINCT 'any' AS reason, provider, registry, repository, digest, is_tagged, unit_bytes,
           opaque_bytes, created_at
    FROM listed
),
candidates AS (
    SELECT reason, provider, registry, repository, digest FROM candidate_units
),
unit_members AS MATERIALIZED (
    SELECT * FROM {image_unit_members}
),
blobs AS MATERIALIZED (
    SELECT * FROM {image_blobs}
),
candidate_repositories AS (
    SELECT DISTINCT reason, provider, registry, repository FROM candidates
),
unit_blobs AS (
    SELECT DISTINCT um.provider, um.registry, um.repository, um.unit_digest, b.blob_digest
    FROM unit_members AS um
    JOIN blobs AS b
      ON b.provider = um.provider AND b.registry = um.registry
     AND b.repository = um.repository AND b.image_digest = um.image_digest
),
blob_sizes AS (
    SELECT provider, registry, repository, blob_digest, MAX(size_bytes) AS size_bytes
    FROM blobs
    GROUP BY provider, registry, repository, blob_digest
),
blob_status AS (
    SELECT cr.reason, ub.provider, ub.registry, ub.repository, ub.blob_digest,
           bool_and(c.digest IS NOT NULL) AS only_candidates
    FROM candidate_repositories AS cr
    JOIN unit_blobs AS ub
      ON ub.provider = cr.provider AND ub.registry = cr.registry AND ub.repository = cr.repository
    LEFT JOIN candidates AS c
      ON c.reason = cr.reason AND c.provider = ub.provider AND c.registry = ub.registry
     AND c.repository = ub.repository AND c.digest = ub.unit_digest
    GROUP BY cr.reason, ub.provider, ub.registry, ub.repository, ub.blob_digest
),
freed_blobs AS (
    SELECT s.reason, s.provider, s.registry, s.repository,
           CAST(SUM(bs.size_bytes) AS BIGINT) AS freed_blob_bytes
    FROM blob_status AS s
    JOIN blob_sizes AS bs
      ON bs.provider = s.provider AND bs.registry = s.registry
     AND bs.repository = s.repository AND bs.blob_digest = s.blob_digest
    WHERE s.only_candidates
    GROUP BY s.reason, s.provider, s.registry, s.repository
),
per_repository AS (
    SELECT reason, provider, registry, repository,
           COUNT(*) AS candidate_count,
           COUNT(*) FILTER (WHERE is_tagged) AS tagged_count,
           CAST(SUM(unit_bytes) AS BIGINT) AS candidate_bytes,
           CAST(SUM(opaque_bytes) AS BIGINT) AS opaque_bytes,
           MIN(created_at) AS oldest_created_at
    FROM candidate_units
    GROUP BY reason, provider, registry, repository
)
SELECT
    p.provider,
    p.registry,
    p.repository,
    p.reason,
    p.candidate_count,
    p.tagged_count,
    p.candidate_bytes,
    COALESCE(f.freed_blob_bytes, 0) + p.opaque_bytes AS reclaimable_bytes,
    p.oldest_created_at,
    p.registry || '/' || p.repository AS reference
FROM per_repository AS p
LEFT JOIN freed_blobs AS f
  ON f.reason = p.reason AND f.provider = p.provider AND f.registry = p.registry
 AND f.repository = p.repository
