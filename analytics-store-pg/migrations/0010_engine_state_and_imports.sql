-- A job's state document beside its watermark: the alert engine stores its whole state
-- (pending breaches, cooldowns, reminder schedules) in the same transaction as the alerts
-- and outbox entries of the step that produced it. Existing rows have no state.
ALTER TABLE job_watermarks ADD COLUMN state text;

-- Imported configurations are audited as `imported`.
ALTER TABLE alert_config_audit DROP CONSTRAINT alert_config_audit_action_check;
ALTER TABLE alert_config_audit ADD CONSTRAINT alert_config_audit_action_check
    CHECK (action IN ('created', 'updated', 'deleted', 'imported'));
