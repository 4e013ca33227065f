-- Raw events, their dedup keys, and the dirty-hour markers the rollup scheduler reads.
--
-- Text columns that are compared or sorted use COLLATE "C": byte order, like Rust's `str`
-- ordering, whatever the database's default collation is.

-- Raw events, range-partitioned by UTC day on occurred_at. Partitions are named
-- analytics_events_pYYYYMMDD; write_batch creates them on demand and retention drops whole
-- ones. A unique constraint on a partitioned table must include the partition key, so this
-- primary key is also the listing index: (project, occurred_at, id) serves the
-- newest-first keyset pagination of one project and exact lookups once occurred_at is
-- known (from analytics_event_ids).
CREATE TABLE analytics_events (
    project        text COLLATE "C" NOT NULL,
    id             uuid NOT NULL,
    kind           text COLLATE "C" NOT NULL,
    occurred_at    timestamptz NOT NULL,
    received_at    timestamptz NOT NULL,
    correlation_id text COLLATE "C" NOT NULL,
    user_id        text COLLATE "C",
    session_id     text COLLATE "C",
    source         text COLLATE "C",
    sample_rate    double precision NOT NULL,
    -- Filter columns derived from the payload (Event::provider/route/collection/status).
    provider       text COLLATE "C",
    route          text COLLATE "C",
    collection     text COLLATE "C",
    status         text COLLATE "C",
    payload        jsonb NOT NULL,
    properties     jsonb NOT NULL,
    PRIMARY KEY (project, occurred_at, id)
) PARTITION BY RANGE (occurred_at);

-- Secondary indexes, created on every partition. Partial where the column is set only for
-- some kinds, so rows without the value cost nothing.
CREATE INDEX analytics_events_kind_idx
    ON analytics_events (project, kind, occurred_at);
CREATE INDEX analytics_events_provider_idx
    ON analytics_events (project, provider, occurred_at) WHERE provider IS NOT NULL;
CREATE INDEX analytics_events_route_idx
    ON analytics_events (project, route, occurred_at) WHERE route IS NOT NULL;
CREATE INDEX analytics_events_collection_idx
    ON analytics_events (project, collection, occurred_at) WHERE collection IS NOT NULL;
CREATE INDEX analytics_events_correlation_idx
    ON analytics_events (correlation_id);

-- The dedup key. (project, id) is unique across every partition and every occurred_at: a
-- client that re-sends an event with a different occurred_at still gets `Duplicate`.
-- occurred_at says which partition holds the event (get_event). Deliberately no other
-- index (every write pays for each one): retention deletes keys by joining the rows it
-- deletes or the partitions it drops on this primary key.
CREATE TABLE analytics_event_ids (
    project     text COLLATE "C" NOT NULL,
    id          uuid NOT NULL,
    occurred_at timestamptz NOT NULL,
    PRIMARY KEY (project, id)
);

-- Hours whose raw events changed since their last rollup. `version` comes from one
-- sequence, so a marker that was cleared and set again never repeats a version a rollup
-- job read before.
CREATE SEQUENCE rollup_dirty_version_seq;
CREATE TABLE rollup_dirty_hours (
    hour    timestamptz NOT NULL,
    project text COLLATE "C" NOT NULL,
    version bigint NOT NULL,
    PRIMARY KEY (hour, project)
);
