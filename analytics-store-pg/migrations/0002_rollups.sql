-- Rollup rows: statistics and the serialized t-digest per
-- (project, granularity, bucket_start, metric, dimensions).
CREATE TABLE analytics_rollups (
    project      text COLLATE "C" NOT NULL,
    granularity  text COLLATE "C" NOT NULL CHECK (granularity IN ('hour', 'day', 'week')),
    bucket_start timestamptz NOT NULL,
    metric       text COLLATE "C" NOT NULL,
    -- Dimensions::canonical(): a JSON object with sorted keys; part of the key.
    dimensions   text COLLATE "C" NOT NULL,
    -- The same set as jsonb (containment filters) and its sorted names (exact-set filters).
    dims         jsonb NOT NULL,
    dim_names    text[] COLLATE "C" NOT NULL,
    samples      bigint NOT NULL,
    count        double precision NOT NULL,
    sum          double precision NOT NULL,
    min          double precision,
    max          double precision,
    avg          double precision,
    p50          double precision,
    p95          double precision,
    p99          double precision,
    digest       bytea NOT NULL,
    computed_at  timestamptz NOT NULL,
    PRIMARY KEY (project, granularity, metric, bucket_start, dimensions)
);
-- Range reads that do not name a metric.
CREATE INDEX analytics_rollups_bucket_idx
    ON analytics_rollups (project, granularity, bucket_start);
