-- shared_layers: which layers are used by more than one image or repository, and how many bytes does sharing save?
-- One row per layer digest per registry that more than one manifest references:
--   image_count / repository_count   how many manifests / repositories use it
--   saved_bytes                      size_bytes * (image_count - 1): bytes not stored twice thanks to dedup
--   saved_across_repositories_bytes  size_bytes * (repository_count - 1): what a registry-wide blob
--                                    store saves on top of per-repository dedup
WITH uses AS (
    SELECT provider, registry, repository, image_digest, blob_digest, MAX(size_bytes) AS size_bytes
    FROM {image_blobs}
    WHERE kind = 'layer'
    GROUP BY provider, registry, repository, image_digest, blob_digest
)
SELECT
    provider,
    registry,
    blob_digest AS digest,
    MAX(size_bytes) AS size_bytes,
    COUNT(*) AS image_count,
    COUNT(DISTINCT repository) AS repository_count,
    MAX(size_bytes) * (COUNT(*) - 1) AS saved_bytes,
    MAX(size_bytes) * (COUNT(DISTINCT repository) - 1) AS saved_across_repositories_bytes,
    string_agg(DISTINCT repository, ', ' ORDER BY repository) AS repositories
FROM uses
GROUP BY provider, registry, blob_digest
HAVING COUNT(*) > 1
