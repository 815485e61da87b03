-- tag_history: which digests has each tag pointed to, from when to when?
-- One row per version of a tag (the scd2 rows of `tags`), numbered in time order:
--   valid_from / valid_to   when a load first saw the tag on this digest / saw it move or vanish
--                           (load times, not push times); valid_to NULL = current
--   change                  'created' (first version), 'moved' (points at another digest than the
--                           version before), 'restored' (same digest again after a deletion)
--   ended_by                'moved' (a next version starts when this one ends), 'deleted' (no next
--                           version, or only after a gap), NULL while current
WITH versions AS (
    SELECT
        provider,
        registry,
        repository,
        tag,
        digest,
        valid_from,
        valid_to,
        ROW_NUMBER() OVER w AS version,
        LAG(digest) OVER w AS previous_digest,
        LEAD(digest) OVER w AS next_digest,
        LEAD(valid_from) OVER w AS next_valid_from
    FROM {tags} AS t
    WHERE tag IS NOT NULL
    WINDOW w AS (PARTITION BY provider, registry, repository, tag ORDER BY valid_from, valid_to)
)
SELECT
    provider,
    registry,
    repository,
    tag,
    version,
    digest,
    valid_from,
    valid_to,
    (valid_to IS NULL) AS is_current,
    previous_digest,
    next_digest,
    CASE
        WHEN previous_digest IS NULL THEN 'created'
        WHEN previous_digest <> digest THEN 'moved'
        ELSE 'restored'
    END AS change,
    CASE
        WHEN valid_to IS NULL THEN NULL
        WHEN next_valid_from IS NOT NULL AND next_valid_from <= valid_to THEN 'moved'
        ELSE 'deleted'
    END AS ended_by,
    registry || '/' || repository || ':' || tag AS tag_reference,
    registry || '/' || repository || '@' || digest AS pull_reference
FROM versions
