-- Collections are slugs from this version on: Event::parse canonicalises "Black Rose",
-- "black_rose" and "black-rose" to `black-rose`. Stored payloads are canonicalised again
-- whenever they are read; the indexed `collection` column is rewritten here so collection
-- filters find older events too.
UPDATE analytics_events
SET collection = lower(replace(replace(trim(collection), ' ', '-'), '_', '-'))
WHERE collection IS NOT NULL
  AND collection <> lower(replace(replace(trim(collection), ' ', '-'), '_', '-'));

-- The rollup specs gained metrics (ml.jobs, sales.orders, sales.product_orders,
-- inventory.snapshot, funnel.sessions) and groupings (ML by stage, sales by currency), and
-- the ML metrics now take terminal events only. Every hour whose raw events are still kept
-- is marked dirty, so the scheduler re-rolls it (and its day and week) with the new specs
-- and slugs. Hours already past retention are sealed and keep the rows they had.
UPDATE store_counters SET value = value + 1 WHERE name = 'dirty_version';
INSERT INTO rollup_dirty_hours (hour, project, version)
SELECT DISTINCT occurred_at - (occurred_at % 3600000000), project,
       (SELECT value FROM store_counters WHERE name = 'dirty_version')
FROM analytics_events
WHERE true
ON CONFLICT (hour, project) DO UPDATE SET version = excluded.version;
