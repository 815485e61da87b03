-- image_sizes: how big is each image, what is it made of, and how do I pull it?
-- One row per manifest (by digest) in a repository:
--   size_bytes        what the registry reports (for an index: what that registry chose to report)
--   content_bytes     config + layers from the manifest (NULL when the source gave no blobs)
--   children_bytes    for an index: sum of its platform children's content (children loaded as images)
--   image_bytes       best answer to "how big is it": content_bytes, else children_bytes, else size_bytes
--   stored_bytes      what this manifest adds to storage before dedup: its content for a single-platform
--                     manifest, 0 for an index whose children are loaded (they hold the bytes)
--   is_child / parent_index_digest   a platform child of a multi-arch index in the same repository
--   tags, tag_count   current tags (valid_to IS NULL); pull_reference registry/repository@digest
WITH layer_totals AS (
    SELECT provider, registry, repository, image_digest,
           COUNT(*) AS layer_count,
           CAST(SUM(size_bytes) AS BIGINT) AS layers_bytes
    FROM {images__layers} AS l
    GROUP BY provider, registry, repository, image_digest
),
content AS (
    SELECT i.provider, i.registry, i.repository, i.digest,
           COALESCE(lt.layer_count, 0) AS layer_count,
           lt.layers_bytes,
           CASE WHEN lt.layer_count IS NOT NULL OR i.config_digest IS NOT NULL
                THEN COALESCE(i.config_size_bytes, 0) + COALESCE(lt.layers_bytes, 0) END AS content_bytes
    FROM {images} AS i
    LEFT JOIN layer_totals AS lt
      ON lt.provider = i.provider AND lt.registry = i.registry
     AND lt.repository = i.repository AND lt.image_digest = i.digest
),
children AS (
    SELECT m.provider, m.registry, m.repository, m.image_digest,
           COUNT(*) AS platform_count,
           COUNT(c.digest) AS children_loaded,
           CAST(SUM(c.content_bytes) AS BIGINT) AS children_bytes,
           string_agg(concat_ws('/', m.platform_os, m.platform_arch, m.platform_variant), ', '
                      ORDER BY m."position") AS platforms
    FROM {images__manifests} AS m
    LEFT JOIN content AS c
      ON c.provider = m.provider AND c.registry = m.registry
     AND c.repository = m.repository AND c.digest = m.digest
    GROUP BY m.provider, m.registry, m.repository, m.image_digest
),
parents AS (
    SELECT m.provider, m.registry, m.repository, m.digest,
           MIN(m.image_digest) AS parent_index_digest,
           COUNT(DISTINCT m.image_digest) AS parent_count
    FROM {images__manifests} AS m
    JOIN {images} AS p
      ON p.provider = m.provider AND p.registry = m.registry
     AND p.repository = m.repository AND p.digest = m.image_digest
    GROUP BY m.provider, m.registry, m.repository, m.digest
),
current_tags AS (
    SELECT provider, registry, repository, digest,
           COUNT(*) AS tag_count,
           MIN(tag) AS first_tag,
           string_agg(tag, ', ' ORDER BY tag) AS tags
    FROM {tags} AS t
    WHERE valid_to IS NULL AND tag IS NOT NULL
    GROUP BY provider, registry, repository, digest
),
sized AS (
    SELECT
        i.provider,
        i.registry,
        i.repository,
        i.digest,
        i.media_type,
        (ch.image_digest IS NOT NULL
         OR i.media_type IN ('application/vnd.oci.image.index.v1+json',
                             'application/vnd.docker.distribution.manifest.list.v2+json')) AS is_index,
        (pa.digest IS NOT NULL) AS is_child,
        pa.parent_index_digest,
        concat_ws('/', i.platform_os, i.platform_arch, i.platform_variant) AS platform,
        COALESCE(ch.platform_count, 0) AS platform_count,
        ch.platforms,
        i.created_at,
        i.last_pulled_at,
        i.pull_count,
        i.size_bytes,
        i.config_size_bytes,
        co.layer_count,
        co.layers_bytes,
        co.content_bytes,
        ch.children_bytes,
        COALESCE(ch.children_loaded, 0) AS children_loaded,
        COALESCE(ct.tag_count, 0) AS tag_count,
        ct.tags,
        i.registry || '/' || i.repository || '@' || i.digest AS pull_reference,
        CASE WHEN ct.first_tag IS NOT NULL
             THEN i.registry || '/' || i.repository || ':' || ct.first_tag END AS tag_reference
    FROM {images} AS i
    JOIN content AS co
      ON co.provider = i.provider AND co.registry = i.registry
     AND co.repository = i.repository AND co.digest = i.digest
    LEFT JOIN children AS ch
      ON ch.provider = i.provider AND ch.registry = i.registry
     AND ch.repository = i.repository AND ch.image_digest = i.digest
    LEFT JOIN parents AS pa
      ON pa.provider = i.provider AND pa.registry = i.registry
     AND pa.repository = i.repository AND pa.digest = i.digest
    LEFT JOIN current_tags AS ct
      ON ct.provider = i.provider AND ct.registry = i.registry
     AND ct.repository = i.repository AND ct.digest = i.digest
)
SELECT
    provider, registry, repository, digest, media_type, is_index, is_child, parent_index_digest,
    CASE WHEN platform = '' THEN NULL ELSE platform END AS platform,
    platform_count, platforms, created_at, last_pulled_at, pull_count,
    size_bytes, config_size_bytes, layer_count, layers_bytes, content_bytes, children_bytes,
    COALESCE(content_bytes, children_bytes, size_bytes) AS image_bytes,
    CASE
        WHEN is_index AND children_loaded > 0 THEN 0
        ELSE COALESCE(content_bytes, size_bytes, 0)
    END AS stored_bytes,
    (content_bytes IS NOT NULL) AS blobs_known,
    tag_count, tags, pull_reference, tag_reference
FROM sized
