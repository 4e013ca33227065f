-- The SQLite store's schema. Conventions (see docs/stores/sqlite.md):
--   * timestamps are INTEGER microseconds since the Unix epoch, UTC;
--   * UUIDs are 16-byte BLOBs, so BLOB ordering (memcmp) equals Rust's `Uuid` ordering;
--   * enums are their lowercase wire names; free-form structures are JSON text.

-- Raw events. `seq` is the rowid: inserts append to the end of the table b-tree, and
-- retention deletes by rowid in batches.
CREATE TABLE analytics_events (
    seq            INTEGER PRIMARY KEY,
    project        TEXT    NOT NULL,
    id             BLOB    NOT NULL CHECK (length(id) = 16),
    kind           TEXT    NOT NULL,
    occurred_at    INTEGER NOT NULL,
    received_at    INTEGER NOT NULL,
    correlation_id TEXT    NOT NULL,
    user_id        TEXT,
    session_id     TEXT,
    source         TEXT,
    sample_rate    REAL    NOT NULL CHECK (sample_rate > 0 AND sample_rate <= 1),
    -- Derived from the payload, kept as columns because queries filter on them.
    provider       TEXT,
    route          TEXT,
    collection     TEXT,
    status         TEXT,
    payload        TEXT    NOT NULL,
    properties     TEXT    NOT NULL,
    UNIQUE (project, id)
);

-- Listing without a project filter, and retention over all projects.
CREATE INDEX ix_events_time ON analytics_events (occurred_at, id);
-- Listing within a project (the dashboard's main access path), and per-project retention.
CREATE INDEX ix_events_project_time ON analytics_events (project, occurred_at, id);
-- One kind within a project, newest first.
CREATE INDEX ix_events_project_kind_time ON analytics_events (project, kind, occurred_at, id);
-- The payload-derived filters; partial, so events without the field cost nothing.
CREATE INDEX ix_events_provider ON analytics_events (project, provider, occurred_at, id)
    WHERE provider IS NOT NULL;
CREATE INDEX ix_events_route ON analytics_events (project, route, occurred_at, id)
    WHERE route IS NOT NULL;
CREATE INDEX ix_events_collection ON analytics_events (project, collection, occurred_at, id)
    WHERE collection IS NOT NULL;
-- Tracing one request across services.
CREATE INDEX ix_events_correlation ON analytics_events (correlation_id);
-- No index on user_id, session_id, status or received_at: their filters run inside the
-- project/time (or kind, route, ...) index. Random-keyed indexes are what make inserts
-- expensive: dropping the user and session indexes raised insert throughput ~40%.

-- Hours whose raw events changed since they were last rolled up. `version` takes a fresh
-- value of the `dirty_version` counter on every insert into the hour.
CREATE TABLE rollup_dirty_hours (
    hour    INTEGER NOT NULL,
    project TEXT    NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (hour, project)
) WITHOUT ROWID;

-- Monotonic counters of the store (`dirty_version`).
CREATE TABLE store_counters (
    name  TEXT    PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO store_counters (name, value) VALUES ('dirty_version', 0);

-- Rollups, keyed like `RollupKey`; `dimensions` is `Dimensions::canonical()`, and
-- `dimension_names` the JSON array of its names, for exact-name queries.
CREATE TABLE analytics_rollups (
    project         TEXT    NOT NULL,
    granularity     TEXT    NOT NULL CHECK (granularity IN ('hour', 'day', 'week')),
    bucket_start    INTEGER NOT NULL,
    metric          TEXT    NOT NULL,
    dimensions      TEXT    NOT NULL,
    dimension_names TEXT    NOT NULL,
    samples         INTEGER NOT NULL,
    count           REAL    NOT NULL,
    sum             REAL    NOT NULL,
    min             REAL,
    max             REAL,
    avg             REAL,
    p50             REAL,
    p95             REAL,
    p99             REAL,
    digest          BLOB    NOT NULL,
    computed_at     INTEGER NOT NULL,
    PRIMARY KEY (project, granularity, bucket_start, metric, dimensions)
);

-- Alert configurations: scalar fields as columns, lists as JSON.
CREATE TABLE alert_configs (
    id            BLOB    PRIMARY KEY,
    project       TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    metric        TEXT    NOT NULL,
    stat          TEXT    NOT NULL,
    dimensions    TEXT    NOT NULL,
    condition     TEXT    NOT NULL,
    threshold     REAL    NOT NULL,
    window_secs   INTEGER NOT NULL,
    severity      TEXT    NOT NULL,
    cooldown_secs INTEGER NOT NULL,
    channels      TEXT    NOT NULL,
    recipients    TEXT    NOT NULL,
    enabled       INTEGER NOT NULL,
    version       INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    UNIQUE (project, name)
);
CREATE INDEX ix_alert_configs_created ON alert_configs (created_at, id);

-- Every change to a configuration; outlives it (no foreign key on purpose).
CREATE TABLE alert_config_audit (
    seq       INTEGER PRIMARY KEY,
    id        BLOB    NOT NULL UNIQUE,
    config_id BLOB    NOT NULL,
    action    TEXT    NOT NULL CHECK (action IN ('created', 'updated', 'deleted')),
    actor     TEXT    NOT NULL,
    at        INTEGER NOT NULL,
    before    TEXT,
    after     TEXT
);
CREATE INDEX ix_alert_config_audit_config ON alert_config_audit (config_id, seq);

-- Fired alerts. At most one unresolved alert per configuration, enforced by the database.
CREATE TABLE alert_history (
    id              BLOB    PRIMARY KEY,
    config_id       BLOB    NOT NULL,
    project         TEXT    NOT NULL,
    metric          TEXT    NOT NULL,
    severity        TEXT    NOT NULL,
    triggered_at    INTEGER NOT NULL,
    value           REAL    NOT NULL,
    threshold       REAL    NOT NULL,
    message         TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('active', 'acknowledged', 'resolved')),
    acknowledged_by TEXT,
    acknowledged_at INTEGER,
    resolved_by     TEXT,
    resolved_at     INTEGER
);
CREATE UNIQUE INDEX ux_alert_history_unresolved ON alert_history (config_id)
    WHERE status <> 'resolved';
CREATE INDEX ix_alert_history_time ON alert_history (triggered_at, id);
CREATE INDEX ix_alert_history_project_time ON alert_history (project, triggered_at, id);
CREATE INDEX ix_alert_history_config_time ON alert_history (config_id, triggered_at);

-- Notifications recorded against an alert, in the order they were recorded.
CREATE TABLE alert_notifications (
    seq        INTEGER PRIMARY KEY,
    alert_id   BLOB    NOT NULL REFERENCES alert_history (id) ON DELETE CASCADE,
    channel    TEXT    NOT NULL,
    recipient  TEXT    NOT NULL,
    outcome    TEXT    NOT NULL,
    attempts   INTEGER NOT NULL,
    latency_ms INTEGER,
    at         INTEGER NOT NULL
);
CREATE INDEX ix_alert_notifications_alert ON alert_notifications (alert_id, seq);

-- The delivery outbox. `severity_rank` (info 0, warning 1, critical 2) orders claims.
CREATE TABLE notification_outbox (
    id              BLOB    PRIMARY KEY,
    alert_id        BLOB,
    severity        TEXT    NOT NULL,
    severity_rank   INTEGER NOT NULL,
    title           TEXT    NOT NULL,
    body            TEXT    NOT NULL,
    link            TEXT,
    channel         TEXT    NOT NULL,
    recipient       TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
    attempts        INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    sent_at         INTEGER
);
CREATE INDEX ix_outbox_due ON notification_outbox (next_attempt_at) WHERE status = 'pending';

CREATE TABLE notification_attempts (
    seq             INTEGER PRIMARY KEY,
    notification_id BLOB    NOT NULL REFERENCES notification_outbox (id) ON DELETE CASCADE,
    at              INTEGER NOT NULL,
    outcome         TEXT    NOT NULL CHECK (outcome IN ('delivered', 'failed')),
    provider_id     TEXT,
    error           TEXT,
    retry_at        INTEGER,
    duration_ms     INTEGER NOT NULL
);
CREATE INDEX ix_notification_attempts_notification ON notification_attempts (notification_id, seq);

CREATE TABLE in_app_notifications (
    id         BLOB    PRIMARY KEY,
    user_id    TEXT    NOT NULL,
    alert_id   BLOB,
    severity   TEXT    NOT NULL,
    title      TEXT    NOT NULL,
    body       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    read_at    INTEGER
);
CREATE INDEX ix_in_app_user_time ON in_app_notifications (user_id, created_at, id);
CREATE INDEX ix_in_app_unread ON in_app_notifications (user_id) WHERE read_at IS NULL;

-- One row per subject (`user` or `team`), replaced whole.
CREATE TABLE notification_preferences (
    subject_type      TEXT    NOT NULL CHECK (subject_type IN ('user', 'team')),
    subject_id        TEXT    NOT NULL,
    channels          TEXT    NOT NULL,
    email             TEXT,
    phone             TEXT,
    slack_webhook     TEXT,
    mute_non_critical INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    PRIMARY KEY (subject_type, subject_id)
) WITHOUT ROWID;

CREATE TABLE projects (
    id             TEXT    PRIMARY KEY,
    name           TEXT    NOT NULL,
    retention_days INTEGER NOT NULL,
    sample_rate    REAL    NOT NULL,
    created_at     INTEGER NOT NULL
) WITHOUT ROWID;

-- API keys: the SHA-256 hash only, never the key.
CREATE TABLE api_keys (
    id         BLOB    PRIMARY KEY,
    project    TEXT    NOT NULL REFERENCES projects (id),
    name       TEXT    NOT NULL,
    prefix     TEXT    NOT NULL,
    hash       TEXT    NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
) WITHOUT ROWID;
CREATE INDEX ix_api_keys_project ON api_keys (project, created_at, id);

CREATE TABLE job_watermarks (
    job TEXT    PRIMARY KEY,
    at  INTEGER NOT NULL
) WITHOUT ROWID;
