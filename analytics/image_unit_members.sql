-- image_unit_members: which manifests go together when an image is kept or deleted?
-- A "unit" is a top-level image: a single-platform image, or a multi-arch index together with its
-- platform children (the children hold the layers; they are pulled, kept and deleted through the
-- index). One row per (unit, member manifest); a single-platform image is its own only member.
-- A child of an index that is not loaded counts as a top-level image of its own.
WITH parent_links AS (
    SELECT DISTINCT m.provider, m.registry, m.repository,
           m.image_digest AS unit_digest, m.digest AS image_digest
    FROM {images__manifests} AS m
    JOIN {images} AS p
      ON p.provider = m.provider AND p.registry = m.registry
     AND p.repository = m.repository AND p.digest = m.image_digest
    JOIN {images} AS c
      ON c.provider = m.provider AND c.registry = m.registry
     AND c.repository = m.repository AND c.digest = m.digest
    WHERE m.digest <> m.image_digest
)
SELECT i.provider, i.registry, i.repository, i.digest AS unit_digest, i.digest AS image_digest,
       FALSE AS is_child
FROM {images} AS i
WHERE NOT EXISTS (
    SELECT 1 FROM parent_links AS pl
    WHERE pl.provider = i.provider AND pl.registry = i.registry
      AND pl.repository = i.repository AND pl.image_digest = i.digest
)
UNION ALL
SELECT provider, registry, repository, unit_digest, image_digest, TRUE AS is_child
FROM parent_links
