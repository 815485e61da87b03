-- retention_candidates: what would a retention rule "keep the last K images per repository" delete?
-- Top-level images (see image_units) are ranked per repository by push time, newest first (ties
-- by digest); every image ranked after `keep_last` (default 10; set by create_views(keep_last=K))
-- is a candidate, tagged or not. A multi-arch index is ranked once and its platform children
-- follow it: they are never ranked, kept or deleted on their own.
WITH ranked AS (
    SELECT u.*,
           ROW_NUMBER() OVER (
               PARTITION BY provider, registry, repository
               ORDER BY created_at DESC NULLS LAST, digest DESC
           ) AS age_rank
    FROM {image_units} AS u
)
SELECT
    provider, registry, repository, digest, media_type, is_index, platform_count,
    age_rank,
    {keep_last} AS keep_last,
    created_at, last_pulled_at, last_used_at, pull_count,
    is_tagged, tag_count, tags,
    image_bytes, unit_bytes, exclusive_bytes, pull_reference, tag_reference
FROM ranked
WHERE age_rank > {keep_last}
