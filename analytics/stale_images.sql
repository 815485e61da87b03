-- stale_images: which images were neither pushed nor pulled for N days, and how many bytes do they hold?
-- One row per top-level image (see image_units) whose last use - the latest of its push time and
-- any member's last pull - is older than `stale_days` days (default 90; set by
-- create_views(stale_days=N)). Tagged images are included (is_tagged, tags say so); platform
-- children are judged with their index, never alone.
SELECT
    provider, registry, repository, digest, media_type, is_index, platform_count,
    {stale_days} AS stale_days,
    created_at, last_pulled_at, last_used_at, pull_count,
    is_tagged, tag_count, tags,
    image_bytes, unit_bytes, exclusive_bytes, pull_reference, tag_reference
FROM {image_units}
WHERE last_used_at < now() - INTERVAL '{stale_days} days'
