-- image_blobs: which blobs (the config and every layer) does each manifest reference, and how big is each?
-- One row per blob reference of a manifest: kind 'config' (position NULL) or 'layer' (position in the
-- manifest, 0 = base layer). The building block of every dedup answer: a blob digest is stored once
-- however many manifests reference it.
SELECT
    l.provider,
    l.registry,
    l.repository,
    l.image_digest,
    'layer' AS kind,
    l."position" AS "position",
    l.digest AS blob_digest,
    l.size_bytes,
    l.media_type
FROM {images__layers} AS l
WHERE l.digest IS NOT NULL
UNION ALL
SELECT
    i.provider,
    i.registry,
    i.repository,
    i.digest AS image_digest,
    'config' AS kind,
    CAST(NULL AS BIGINT) AS "position",
    i.config_digest AS blob_digest,
    i.config_size_bytes AS size_bytes,
    i.config_media_type AS media_type
FROM {images} AS i
WHERE i.config_digest IS NOT NULL
