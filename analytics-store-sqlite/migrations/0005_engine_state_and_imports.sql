-- A job's state document beside its watermark: the alert engine stores its whole state
-- (pending breaches, cooldowns, reminder schedules) in the same transaction as the alerts
-- and outbox entries of the step that produced it. Existing rows have no state.
ALTER TABLE job_watermarks ADD COLUMN state TEXT;

-- Imported configurations are audited as `imported`: SQLite cannot change a CHECK
-- constraint in place, so the audit table is rebuilt with every row kept.
CREATE TABLE alert_config_audit_new (
    seq       INTEGER PRIMARY KEY,
    id        BLOB    NOT NULL UNIQUE,
    config_id BLOB    NOT NULL,
    action    TEXT    NOT NULL CHECK (action IN ('created', 'updated', 'deleted', 'imported')),
    actor     TEXT    NOT NULL,
    at        INTEGER NOT NULL,
    before    TEXT,
    after     TEXT
);
INSERT INTO alert_config_audit_new (seq, id, config_id, action, actor, at, before, after)
    SELECT seq, id, config_id, action, actor, at, before, after FROM alert_config_audit;
DROP TABLE alert_config_audit;
ALTER TABLE alert_config_audit_new RENAME TO alert_config_audit;
CREATE INDEX ix_alert_config_audit_config ON alert_config_audit (config_id, seq);
