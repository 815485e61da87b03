-- cleanup_candidates: which images could be deleted, and why?
-- The union of untagged_images, stale_images and retention_candidates, one row per image and
-- reason ('untagged', 'stale', 'retention'): an image can be a candidate for several reasons.
-- Platform children of a tagged index never appear; an index appears with its children's bytes.
SELECT provider, registry, repository, digest, 'untagged' AS reason, is_index, platform_count,
       created_at, last_used_at, FALSE AS is_tagged, CAST(NULL AS VARCHAR) AS tags,
       image_bytes, unit_bytes, exclusive_bytes, pull_reference
FROM {untagged_images}
UNION ALL
SELECT provider, registry, repository, digest, 'stale' AS reason, is_index, platform_count,
       created_at, last_used_at, is_tagged, tags,
       image_bytes, unit_bytes, exclusive_bytes, pull_reference
FROM {stale_images}
UNION ALL
SELECT provider, registry, repository, digest, 'retention' AS reason, is_index, platform_count,
       created_at, last_used_at, is_tagged, tags,
       image_bytes, unit_bytes, exclusive_bytes, pull_reference
FROM {retention_candidates}
