-- `funnel.sessions` rows are packed from this version on: one row per bucket and collection
-- value (dimension `collection` only) whose digest column holds every session's progress
-- function, instead of one row per session (dimensions collection, progress, session).
-- Readers skip rows of the old shape; they are deleted here, and every hour with funnel
-- events still kept is marked dirty so the scheduler rebuilds its rows (and its day and
-- week) in the packed shape. Days already past retention lose their funnel rows.
DELETE FROM analytics_rollups
WHERE metric = 'funnel.sessions' AND dim_names <> ARRAY['collection']::text[];

INSERT INTO rollup_dirty_hours (hour, project, version)
SELECT hour, project, nextval('rollup_dirty_version_seq')
FROM (
    SELECT DISTINCT to_timestamp(floor(extract(epoch FROM occurred_at) / 3600) * 3600) AS hour,
           project
    FROM analytics_events
    WHERE kind IN ('page_view', 'product_view', 'cart_add', 'checkout_start', 'order')
) AS hours
ON CONFLICT (hour, project) DO UPDATE SET version = EXCLUDED.version;
