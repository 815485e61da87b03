-- tag_moves: which tags move most, recently and over all the recorded history?
-- One row per tag (current or deleted) with its move counts; a move = a version that points at
-- another digest than the version before (see tag_history.change). Tags that never moved have 0:
--   moves_in_window   moves seen in the last `window_days` days (default 30; set by
--                     create_views(tag_moves_days=N)); moves_all_time over the whole history
--   versions          how many scd2 versions the tag has; last_moved_at when the latest move was seen
-- Times are load times: a tag moved twice between two loads counts once.
SELECT
    provider,
    registry,
    repository,
    tag,
    {tag_moves_days} AS window_days,
    COUNT(*) FILTER (WHERE change = 'moved'
                       AND valid_from >= now() - INTERVAL '{tag_moves_days} days') AS moves_in_window,
    COUNT(*) FILTER (WHERE change = 'moved') AS moves_all_time,
    COUNT(*) AS versions,
    MIN(valid_from) AS first_seen_at,
    MAX(valid_from) FILTER (WHERE change = 'moved') AS last_moved_at,
    MAX(CASE WHEN is_current THEN digest END) AS current_digest,
    bool_or(is_current) AS is_current,
    registry || '/' || repository || ':' || tag AS tag_reference
FROM {tag_history}
GROUP BY provider, registry, repository, tag
