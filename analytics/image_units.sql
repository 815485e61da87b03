-- image_units: what would I keep or delete, image by image, counting a multi-arch index with its children?
-- One row per top-level image (single-platform image, or index + its platform children):
--   is_tagged        the index or any of its members has a current tag (children of a tagged index
--                    are therefore never cleanup candidates on their own)
--   last_used_at     latest of push time and last pull over all members
--   unit_bytes       sum of the members' stored bytes (layers counted per manifest)
--   exclusive_bytes  bytes of blobs no other unit of the repository references: what deleting
--                    this one image (alone) would free in its repository
--   opaque_bytes     part of unit_bytes from manifests whose blobs the source did not list
WITH sizes AS MATERIALIZED (
    SELECT * FROM {image_sizes}
),
unit_members AS MATERIALIZED (
    SELECT * FROM {image_unit_members}
),
blobs AS MATERIALIZED (
    SELECT * FROM {image_blobs}
),
members AS (
    SELECT um.provider, um.registry, um.repository, um.unit_digest, um.image_digest, um.is_child,
           s.created_at, s.last_pulled_at, s.pull_count, s.stored_bytes, s.blobs_known,
           s.tag_count, s.tags
    FROM unit_members AS um
    JOIN sizes AS s
      ON s.provider = um.provider AND s.registry = um.registry
     AND s.repository = um.repository AND s.digest = um.image_digest
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
blob_users AS (
    SELECT provider, registry, repository, blob_digest, COUNT(*) AS unit_count
    FROM unit_blobs
    GROUP BY provider, registry, repository, blob_digest
),
exclusive AS (
    SELECT ub.provider, ub.registry, ub.repository, ub.unit_digest,
           CAST(SUM(bs.size_bytes) AS BIGINT) AS exclusive_blob_bytes
    FROM unit_blobs AS ub
    JOIN blob_users AS bu
      ON bu.provider = ub.provider AND bu.registry = ub.registry
     AND bu.repository = ub.repository AND bu.blob_digest = ub.blob_digest
    JOIN blob_sizes AS bs
      ON bs.provider = ub.provider AND bs.registry = ub.registry
     AND bs.repository = ub.repository AND bs.blob_digest = ub.blob_digest
    WHERE bu.unit_count = 1
    GROUP BY ub.provider, ub.registry, ub.repository, ub.unit_digest
),
per_unit AS (
    SELECT provider, registry, repository, unit_digest,
           COUNT(*) - 1 AS child_count,
           MAX(last_pulled_at) AS last_pulled_at,
           CAST(SUM(COALESCE(pull_count, 0)) AS BIGINT) AS pull_count,
           CAST(SUM(stored_bytes) AS BIGINT) AS unit_bytes,
           CAST(SUM(CASE WHEN blobs_known THEN 0 ELSE stored_bytes END) AS BIGINT) AS opaque_bytes,
           CAST(SUM(tag_count) AS BIGINT) AS tag_count,
           string_agg(tags, ', ' ORDER BY is_child, image_digest) AS tags
    FROM members
    GROUP BY provider, registry, repository, unit_digest
)
SELECT
    s.provider,
    s.registry,
    s.repository,
    s.digest,
    s.media_type,
    s.is_index,
    s.platform_count,
    s.platforms,
    u.child_count,
    s.created_at,
    u.last_pulled_at,
    CASE WHEN u.last_pulled_at IS NULL OR u.last_pulled_at < s.created_at
         THEN s.created_at ELSE u.last_pulled_at END AS last_used_at,
    u.pull_count,
    (u.tag_count > 0) AS is_tagged,
    u.tag_count,
    u.tags,
    s.image_bytes,
    u.unit_bytes,
    COALESCE(e.exclusive_blob_bytes, 0) + u.opaque_bytes AS exclusive_bytes,
    u.opaque_bytes,
    s.pull_reference,
    s.tag_reference
FROM per_unit AS u
JOIN sizes AS s
  ON s.provider = u.provider AND s.registry = u.registry
 AND s.repository = u.repository AND s.digest = u.unit_digest
LEFT JOIN exclusive AS e
  ON e.provider = u.provider AND e.registry = u.registry
 AND e.repository = u.repository AND e.unit_digest = u.unit_digest
