-- untagged_images: which images have no tag any more, and how many bytes do they hold?
-- One row per top-level image (see image_units) with no current tag on it or on any of its
-- members. Platform children of a tagged multi-arch index never appear: they are in use through
-- their index. An untagged index appears once, with its children's bytes.
--   unit_bytes       the image's bytes, layers counted per manifest
--   exclusive_bytes  bytes deleting this image alone would free in its repository
SELECT
    provider, registry, repository, digest, media_type, is_index, platform_count, platforms,
    created_at, last_pulled_at, last_used_at, pull_count,
    image_bytes, unit_bytes, exclusive_bytes, pull_reference
FROM {image_units}
WHERE NOT is_tagged
