-- storage_growth: how many bytes were pushed per day and per week in each registry, and how did storage grow?
-- One row per registry, period ('day' or 'week', weeks start on Monday, UTC) and period start
-- that saw a push (periods without pushes have no row):
--   images_pushed / manifests_pushed   top-level images / all manifests pushed in the period
--   bytes_pushed                       their stored bytes, layers counted per manifest
--   new_unique_bytes                   bytes of blobs the registry had not seen before (a blob is
--                                      dated by the first image that uses it)
--   cumulative_bytes / cumulative_unique_bytes   running totals up to the end of the period
-- Push times come from the images still loaded; images without a push time are left out.
WITH pushes AS (
    SELECT provider, registry, created_at, is_child, stored_bytes, blobs_known
    FROM {image_sizes}
    WHERE created_at IS NOT NULL
),
blob_first AS (
    SELECT b.provider, b.registry, b.blob_digest,
           MAX(b.size_bytes) AS size_bytes,
           MIN(s.created_at) AS first_seen_at
    FROM {image_blobs} AS b
    JOIN {image_sizes} AS s
      ON s.provider = b.provider AND s.registry = b.registry
     AND s.repository = b.repository AND s.digest = b.image_digest
    WHERE s.created_at IS NOT NULL
    GROUP BY b.provider, b.registry, b.blob_digest
),
events AS (
    SELECT provider, registry, created_at AS at,
           CASE WHEN is_child THEN 0 ELSE 1 END AS images,
           1 AS manifests,
           stored_bytes AS pushed_bytes,
           CASE WHEN blobs_known THEN 0 ELSE stored_bytes END AS new_bytes
    FROM pushes
    UNION ALL
    SELECT provider, registry, first_seen_at AS at, 0, 0, 0, size_bytes
    FROM blob_first
),
periods AS (
    SELECT 'day' AS period
    UNION ALL
    SELECT 'week' AS period
),
bucketed AS (
    SELECT p.period, e.provider, e.registry,
           CAST(CASE WHEN p.period = 'day'
                     THEN date_trunc('day', e.at AT TIME ZONE 'UTC')
                     ELSE date_trunc('week', e.at AT TIME ZONE 'UTC') END AS DATE) AS period_start,
           e.images, e.manifests, e.pushed_bytes, e.new_bytes
    FROM events AS e
    CROSS JOIN periods AS p
),
per_period AS (
    SELECT period, provider, registry, period_start,
           CAST(SUM(images) AS BIGINT) AS images_pushed,
           CAST(SUM(manifests) AS BIGINT) AS manifests_pushed,
           CAST(SUM(pushed_bytes) AS BIGINT) AS bytes_pushed,
           CAST(SUM(new_bytes) AS BIGINT) AS new_unique_bytes
    FROM bucketed
    GROUP BY period, provider, registry, period_start
)
SELECT
    provider,
    registry,
    period,
    period_start,
    images_pushed,
    manifests_pushed,
    bytes_pushed,
    new_unique_bytes,
    CAST(SUM(bytes_pushed) OVER w AS BIGINT) AS cumulative_bytes,
    CAST(SUM(new_unique_bytes) OVER w AS BIGINT) AS cumulative_unique_bytes
FROM per_period
WINDOW w AS (PARTITION BY provider, registry, period ORDER BY period_start
             ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
