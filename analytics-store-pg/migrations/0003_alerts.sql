-- Alert configurations with their audit trail, and the alert history.

CREATE TABLE alert_configs (
    id         uuid PRIMARY KEY,
    project    text COLLATE "C" NOT NULL,
    name       text NOT NULL,
    enabled    boolean NOT NULL,
    -- The whole AlertConfigSpec as JSON (project, name and enabled are copied out above).
    spec       jsonb NOT NULL,
    version    bigint NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    CONSTRAINT alert_configs_project_name_key UNIQUE (project, name)
);
CREATE INDEX alert_configs_created_idx ON alert_configs (created_at, id);

-- No foreign key: the trail outlives the configuration.
CREATE TABLE alert_config_audit (
    seq       bigserial PRIMARY KEY,
    id        uuid NOT NULL UNIQUE,
    config_id uuid NOT NULL,
    action    text NOT NULL CHECK (action IN ('created', 'updated', 'deleted')),
    actor     text NOT NULL,
    at        timestamptz NOT NULL,
    before    jsonb,
    after     jsonb
);
CREATE INDEX alert_config_audit_config_idx ON alert_config_audit (config_id, seq);

-- One row per firing. config_id has no foreign key: history is kept when its configuration
-- is deleted.
CREATE TABLE alert_history (
    id              uuid PRIMARY KEY,
    config_id       uuid NOT NULL,
    project         text COLLATE "C" NOT NULL,
    metric          text COLLATE "C" NOT NULL,
    severity        text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    triggered_at    timestamptz NOT NULL,
    value           double precision NOT NULL,
    threshold       double precision NOT NULL,
    message         text NOT NULL,
    status          text NOT NULL CHECK (status IN ('active', 'acknowledged', 'resolved')),
    acknowledged_by text,
    acknowledged_at timestamptz,
    resolved_by     text,
    resolved_at     timestamptz
);
-- At most one unresolved alert per configuration, enforced by the database.
CREATE UNIQUE INDEX alert_history_one_unresolved_idx
    ON alert_history (config_id) WHERE status <> 'resolved';
CREATE INDEX alert_history_triggered_idx ON alert_history (triggered_at, id);
CREATE INDEX alert_history_project_idx ON alert_history (project, triggered_at, id);
CREATE INDEX alert_history_config_idx ON alert_history (config_id, triggered_at);

-- Notification records of an alert, in the order they were recorded.
CREATE TABLE alert_notifications (
    seq        bigserial PRIMARY KEY,
    alert_id   uuid NOT NULL REFERENCES alert_history (id) ON DELETE CASCADE,
    channel    text NOT NULL,
    recipient  text NOT NULL,
    outcome    text NOT NULL,
    attempts   bigint NOT NULL,
    latency_ms bigint,
    at         timestamptz NOT NULL
);
CREATE INDEX alert_notifications_alert_idx ON alert_notifications (alert_id, seq);
