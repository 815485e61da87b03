-- cleanup_candidates: which images could be deleted, and why?
-- The union of untagged_images, stale_images and retention_candidates, one row per image and
-- reason ('untagged', 'stale', 'retention'): an image can be a candidate for several reasons.
-- Platform children of a tagged index never appear; an index appears with its children's bytes.
-- (Same rules as those three views, computed in one pass over image_units.)
WITH ranked AS (
    SELECT u.*,
           ROW_NUMBER() OVER (
               PARTITION BY provider, registry, repository
               ORDER BY created_at DESC NULLS LAST, digest DESC
           ) AS age_rank
    FROM {image_units} AS u
),
reasons AS (
    SELECT 'untagged' AS reason
    UNION ALL
    SELECT 'stale' AS reason
    UNION ALL
    SELECT 'retention' AS reason
)
SELECT r.provider, r.registry, r.repository, r.digest, x.reason, r.is_index, r.platform_count,
       r.created_at, r.last_used_at, r.age_rank, r.is_tagged, r.tags,
       r.image_bytes, r.unit_bytes, r.exclusive_bytes, r.opaque_bytes, r.pull_reference
FROM ranked AS r
JOIN reasons AS x
  ON (x.reason = 'untagged' AND NOT r.is_tagged)
  OR (x.reason = 'stale' AND r.last_used_at < now() - INTERVAL '{stale_days} days')
  OR (x.reason = 'retention' AND r.age_rank > {keep_last})
