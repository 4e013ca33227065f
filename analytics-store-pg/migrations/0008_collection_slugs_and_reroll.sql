-- Collections are slugs from this version on: Event::parse canonicalises "Black Rose",
-- "black_rose" and "black-rose" to `black-rose`. Stored payloads are canonicalised again
-- whenever they are read; the indexed `collection` column is rewritten here so collection
-- filters find older events too.
UPDATE analytics_events
SET collection = lower(regexp_replace(btrim(collection), '[[:space:]_-]+', '-', 'g'))
WHERE collection IS NOT NULL
  AND collection <> lower(regexp_replace(btrim(collection), '[[:space:]_-]+', '-', 'g'));

-- The rollup specs gained metrics (ml.jobs, sales.orders, sales.product_orders,
-- inventory.snapshot, funnel.sessions) and groupings (ML by stage, sales by currency), and
-- the ML metrics now take terminal events only. Every hour whose raw events are still kept
-- is marked dirty, so the scheduler re-rolls it (and its day and week) with the new specs
-- and slugs. Hours already past retention are sealed and keep the rows they had.
INSERT INTO rollup_dirty_hours (hour, project, version)
SELECT hour, project, nextval('rollup_dirty_version_seq')
FROM (
    SELECT DISTINCT to_timestamp(floor(extract(epoch FROM occurred_at) / 3600) * 3600) AS hour,
           project
    FROM analytics_events
) AS hours
ON CONFLICT (hour, project) DO UPDATE SET version = EXCLUDED.version;
